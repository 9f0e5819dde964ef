"""MovieLens-100K, read from the files that the ``recbole==1.2.1`` wheel ships.

Genres become the ``category`` group and the release year a single-valued group in the role
of the paper's ``brand``; as the reference's Amazon pipeline does for categories and brands,
values carried by fewer than 5 items are dropped (``MIN_FEATURE_COUNT``). recbole itself is
never imported: only its data files are read.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
from pathlib import Path

import numpy as np

from bcemb.data.datasets import DATASETS
from bcemb.data.graph import DataError, EvolvingGraph

logger = logging.getLogger(__name__)

__all__ = ["load_movielens_100k", "movielens_100k_dir", "MIN_FEATURE_COUNT"]

#: Feature values on fewer items are dropped (the reference's frequency threshold).
MIN_FEATURE_COUNT = 5


def movielens_100k_dir() -> Path:
    """Folder of the ml-100k files inside the installed recbole wheel."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "MovieLens-100K needs the files of the recbole wheel: "
            "pip install --no-deps recbole==1.2.1 (make install does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not path.is_dir():
        raise DataError(f"recbole is installed but {path} is missing")
    return path


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise DataError(f"empty file: {path}")
    header = [h.split(":")[0] for h in rows[0]]
    return header, rows[1:]


@DATASETS.register("ml-100k", synonyms=("movielens", "movielens-100k"))
def load_movielens_100k(*, path: str | Path | None = None) -> EvolvingGraph:
    """Load MovieLens-100K as an evolving graph.

    Args:
        path: Folder with ``ml-100k.inter`` and ``ml-100k.item``; defaults to the recbole wheel's.

    Returns:
        943 users, 1,682 items, 100,000 rated edges with timestamps; item groups ``category``
        (18 genres: "unknown" is on 2 items only) and ``brand`` (44 release years, those of at
        least 5 movies; 79 older or rarer movies have no year value).
    """
    folder = Path(path) if path is not None else movielens_100k_dir()
    header, rows = _read_table(folder / "ml-100k.inter")
    col = {h: i for i, h in enumerate(header)}
    for needed in ("user_id", "item_id", "rating", "timestamp"):
        if needed not in col:
            raise DataError(f"{folder / 'ml-100k.inter'}: no column {needed!r}")
    try:
        data = np.array(
            [
                (r[col["user_id"]], r[col["item_id"]], r[col["rating"]], r[col["timestamp"]])
                for r in rows
                if r
            ],
            dtype=object,
        )
        ratings = data[:, 2].astype(np.float32)
        timestamps = data[:, 3].astype(np.float64).astype(np.int64)
    except (ValueError, IndexError) as err:
        raise DataError(f"{folder / 'ml-100k.inter'}: malformed row ({err})") from err

    iheader, irows = _read_table(folder / "ml-100k.item")
    icol = {h: i for i, h in enumerate(iheader)}
    genres: dict[object, list[str]] = {}
    years: dict[object, list[str]] = {}
    for r in irows:
        if len(r) < len(iheader):
            continue
        item = r[icol["item_id"]]
        genres[item] = r[icol["class"]].split()
        year = r[icol["release_year"]].strip()
        years[item] = [year] if year.isdigit() else []
    return EvolvingGraph.from_log(
        data[:, 0].astype(str),
        data[:, 1].astype(str),
        ratings,
        timestamps,
        item_features={"brand": years, "category": genres},
        min_feature_count=MIN_FEATURE_COUNT,
        name="ml-100k",
    )
