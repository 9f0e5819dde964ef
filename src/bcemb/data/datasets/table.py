"""Your own interaction log: a CSV or Parquet table with one row per (user, item, time) event.

The columns are named by options; only the user, item and time columns are required:

* user, item: any ids (read as strings, so ``7`` and ``"7"`` are the same node);
* time: numbers (any unit: seconds, days, an event counter) or date/time strings
  (ISO 8601 or ``time_format``), turned into seconds since the epoch;
* rating (optional): numbers; without one, the consumer tasks that need ratings are skipped;
* item features (optional, several columns): one multi-valued column per feature group, the
  values separated by ``feature_sep`` (``"rock|jazz"``); an item's bag is the union over its
  rows. Values seen on fewer than ``min_feature_count`` items are dropped.

The log is then sliced in time exactly like the paper's datasets (:mod:`bcemb.data.splits`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bcemb.data.consumer_tasks import RATING_TASKS
from bcemb.data.datasets import DATASETS
from bcemb.data.graph import DataError, EvolvingGraph

logger = logging.getLogger(__name__)

__all__ = ["load_table", "parse_log_options", "MIN_ROWS"]

#: Fewer events than this cannot be sliced into versions with training and validation edges.
MIN_ROWS = 50
_PARQUET = (".parquet", ".pq")


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    """The named columns of a CSV (``.tsv``: tab separated; ``.gz`` ok) or Parquet file."""
    if not path.is_file():
        raise DataError(f"no interaction log at {path}")
    suffixes = [s.lower() for s in path.suffixes]
    parquet = any(s in _PARQUET for s in suffixes)
    try:
        if parquet:
            import pyarrow.parquet as pq

            available = list(pq.read_schema(path).names)
        else:
            sep = "\t" if ".tsv" in suffixes else ","
            available = list(pd.read_csv(path, sep=sep, nrows=0).columns)
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise DataError(f"cannot read {path} as {'Parquet' if parquet else 'CSV'}: {err}") from err
    missing = [c for c in columns if c not in available]
    if missing:
        raise DataError(
            f"{path}: no column {', '.join(map(repr, missing))}; the file has "
            f"{', '.join(map(repr, available))} (name the columns with --log-option "
            "user=NAME, item=NAME, time=NAME, rating=NAME, feature=NAME)"
        )
    if parquet:
        return pd.read_parquet(path, columns=columns)
    return pd.read_csv(path, sep=sep, usecols=columns, dtype=str, keep_default_na=False)


def _times(values: pd.Series, column: str, time_format: str | None) -> np.ndarray:
    """Numeric times as they are; strings parsed as dates, in seconds since the epoch."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    else:
        numeric = pd.to_numeric(values, errors="coerce") if time_format is None else None
        if numeric is not None and not numeric.isna().any():
            as_int = numeric.astype(np.int64) if (numeric % 1 == 0).all() else None
            return (as_int if as_int is not None else numeric.astype(np.float64)).to_numpy()
        parsed = pd.to_datetime(values, format=time_format, utc=True, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        examples = ", ".join(f"row {i + 1}: {values.iloc[i]!r}" for i in bad[:3])
        hint = (
            f" with format {time_format!r}"
            if time_format
            else " (numbers or ISO 8601 dates; or give --log-option time-format=...)"
        )
        raise DataError(
            f"column {column!r}: {len(bad)} of {len(values)} times cannot be parsed{hint}; {examples}"
        )
    # whatever resolution pandas parsed at (ns, us, s), count whole seconds since the epoch
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    return ((parsed - epoch) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


_KEYS = {"user": "user", "item": "item", "time": "time", "rating": "rating",
         "sep": "feature_sep", "time-format": "time_format", "time_format": "time_format"}


def parse_log_options(items: Sequence[str]) -> dict[str, object]:
    """``["user=uid", "feature=tags", ...]`` (the CLI's ``--log-option``) as :func:`load_table` options.

    ``feature`` may repeat; every other key may appear once.
    """
    opts: dict[str, object] = {}
    features: list[str] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not value:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        if key in ("feature", "features"):
            features.append(value)
            continue
        if key not in _KEYS:
            raise ValueError(f"unknown key {key!r} in {item!r}; keys: user, item, time, rating, feature, sep, time-format")
        if _KEYS[key] in opts:
            raise ValueError(f"{key} given twice")
        opts[_KEYS[key]] = value
    if features:
        opts["features"] = features
    return opts


@DATASETS.register("table", synonyms=("csv", "parquet", "log"))
def load_table(
    *,
    log: str | Path,
    user: str = "user_id",
    item: str = "item_id",
    time: str = "timestamp",
    rating: str | None = None,
    features: Sequence[str] = (),
    feature_sep: str = "|",
    time_format: str | None = None,
    min_feature_count: int = 1,
    name: str | None = None,
) -> EvolvingGraph:
    """Load an interaction log from a CSV or Parquet file as an evolving graph.

    Args:
        log: The file (``.csv``, ``.tsv``, ``.csv.gz``, ``.parquet``).
        user: Column of user ids.
        item: Column of item ids.
        time: Column of event times (numbers, or dates parsed as UTC).
        rating: Column of numeric ratings (None: no ratings; the rating tasks are skipped).
        features: Columns of item features, each a group of values joined by ``feature_sep``.
        feature_sep: Separator of the values in a feature cell.
        time_format: ``strftime`` format of the times (default: numbers, else ISO 8601).
        min_feature_count: Feature values on fewer items are dropped.
        name: Name of the graph (default the file's stem).

    Returns:
        The graph, edges sorted by time.

    Raises:
        DataError: Missing columns, unparsable times or ratings, or fewer than
            :data:`MIN_ROWS` rows (each named in the message).

    Example:
        >>> g = load_table(log="events.csv", user="uid", item="sku", time="ts", rating="stars",
        ...                features=["tags"])
    """
    path = Path(log)
    features = [features] if isinstance(features, str) else list(features)
    roles = {"user": user, "item": item, "time": time}
    if rating:
        roles["rating"] = rating
    used = list(dict.fromkeys([*roles.values(), *features]))
    frame = _read(path, used)
    if len(frame) < MIN_ROWS:
        raise DataError(
            f"{path} has {len(frame)} rows; at least {MIN_ROWS} interactions are needed to slice "
            "it into versions with training and validation edges"
        )
    ids = {}
    for role in ("user", "item"):
        col = frame[roles[role]]
        empty = np.flatnonzero((col.isna() | (col.astype(str).str.strip() == "")).to_numpy())
        if len(empty):
            raise DataError(f"column {roles[role]!r}: {len(empty)} empty {role} ids (first at row {empty[0] + 1})")
        ids[role] = col.astype(str).to_numpy()
    timestamps = _times(frame[time], time, time_format)
    if rating:
        ratings = pd.to_numeric(frame[rating], errors="coerce")
        bad = np.flatnonzero(ratings.isna().to_numpy())
        if len(bad):
            raise DataError(
                f"column {rating!r}: {len(bad)} ratings are not numbers "
                f"(row {bad[0] + 1}: {frame[rating].iloc[bad[0]]!r})"
            )
        values = ratings.to_numpy(dtype=np.float32)
    else:
        logger.warning(
            "%s: no rating column (--log-option rating=NAME): the consumer tasks that need ratings (%s) "
            "will be skipped", path, ", ".join(RATING_TASKS),
        )
        values = np.zeros(len(frame), dtype=np.float32)  # constant: no rating task is labelled
    item_features = {}
    for col in features:
        bags: dict[object, set[str]] = {}
        for key, cell in zip(ids["item"], frame[col].astype(str), strict=True):
            vals = {v.strip() for v in cell.split(feature_sep)} - {"", "nan", "None"}
            bags.setdefault(key, set()).update(vals)
        item_features[col] = {k: sorted(v) for k, v in bags.items()}
    graph = EvolvingGraph.from_log(
        ids["user"], ids["item"], values, timestamps,
        item_features=item_features, min_feature_count=min_feature_count,
        name=name or path.name.split(".")[0],
    )
    logger.info("loaded %r from %s", graph, path)
    return graph
