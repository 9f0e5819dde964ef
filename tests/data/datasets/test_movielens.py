"""Tests of the MovieLens-100K loader: the recbole wheel's files and tiny files written here.

Tests on the real files carry the project's ``dataset`` marker (deselected by default; run
them with ``-m dataset``) and skip where recbole's files are not installed.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bcemb.data.datasets import DATASETS
from bcemb.data.datasets.movielens import load_movielens_100k, movielens_100k_dir
from bcemb.data.graph import DataError, EvolvingGraph

GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip  ("unknown" is on 2 items only: below the threshold of 5)

_NO_RECBOLE = importlib.util.find_spec("recbole") is None

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"


@pytest.fixture(scope="module")
def ml() -> EvolvingGraph:
    return load_movielens_100k()


def _pos(g: EvolvingGraph) -> dict[str, int]:
    return {str(v): j for j, v in enumerate(g.item_ids.tolist())}


@pytest.mark.dataset
@pytest.mark.skipif(_NO_RECBOLE, reason="recbole's files are not installed")
def test_sizes(ml: EvolvingGraph) -> None:
    assert (ml.num_users, ml.num_items, ml.num_edges) == (943, 1682, 100_000)
    assert ml.name == "ml-100k"
    assert set(np.unique(ml.rating).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert Counter(ml.rating.tolist())[4.0] == 34_174


@pytest.mark.dataset
@pytest.mark.skipif(_NO_RECBOLE, reason="recbole's files are not installed")
def test_timestamps_sorted(ml: EvolvingGraph) -> None:
    assert ml.timestamp.dtype == np.int64
    assert (np.diff(ml.timestamp) >= 0).all()
    assert ml.timestamp[0] < ml.timestamp[-1]


@pytest.mark.dataset
@pytest.mark.skipif(_NO_RECBOLE, reason="recbole's files are not installed")
def test_matches_the_raw_file(ml: EvolvingGraph) -> None:
    path = movielens_100k_dir() / "ml-100k.inter"
    tokens = path.read_text().split()  # no field holds a space; the header has 4 tokens
    raw = np.array(tokens[4:]).reshape(-1, 4).astype(np.float64).astype(np.int64)
    got = np.stack(
        [
            ml.user_ids[ml.user].astype(np.int64),
            ml.item_ids[ml.item].astype(np.int64),
            ml.rating.astype(np.int64),
            ml.timestamp,
        ],
        axis=1,
    )
    # the multiset of (user, item, rating, timestamp) rows survives the re-indexing
    raw_sorted = raw[np.lexsort(raw.T[::-1])]
    got_sorted = got[np.lexsort(got.T[::-1])]
    np.testing.assert_array_equal(got_sorted, raw_sorted)
    # and re-indexing is by first appearance in time
    assert ml.user[0] == 0 and ml.item[0] == 0
    assert (np.diff(np.maximum.accumulate(ml.user)) <= 1).all()


@pytest.mark.dataset
@pytest.mark.skipif(_NO_RECBOLE, reason="recbole's files are not installed")
def test_feature_groups(ml: EvolvingGraph) -> None:
    assert set(ml.item_features) == {"category", "brand"}
    cat, brand = ml.item_features["category"], ml.item_features["brand"]
    assert cat.vocab == tuple(sorted(GENRES)) and len(cat.vocab) == 18
    # release years of at least 5 movies, as the reference keeps brands of >= 5 items
    assert len(brand.vocab) == 44 and all(y.isdigit() for y in brand.vocab)
    year_counts = Counter(v for i in range(brand.num_items) for v in brand.bag(i))
    assert min(year_counts.values()) >= 5
    assert cat.num_items == brand.num_items == 1682
    pos = _pos(ml)
    assert cat.bag(pos["1"]) == ["Animation", "Children's", "Comedy"]  # Toy Story (1995)
    assert brand.bag(pos["1"]) == ["1995"]
    assert cat.bag(pos["267"]) == [] and brand.bag(pos["267"]) == []  # "unknown", no year
    # a single year per item at most
    assert (np.diff(brand.offsets) <= 1).all()
    assert int((np.diff(brand.offsets) == 1).sum()) == 1603


def test_registered_names() -> None:
    for name in ("ml-100k", "movielens", "MovieLens-100K", "ml_100k"):
        assert DATASETS.canonical(name) == "ml-100k"
    assert DATASETS.get("movielens") is load_movielens_100k


# -- tiny folders written by the tests (no marker: these always run) -------------------------


def _write_folder(tmp_path: Path, inter: str | None, item: str | None) -> Path:
    if inter is not None:
        (tmp_path / "ml-100k.inter").write_text(inter, encoding="utf-8")
    if item is not None:
        (tmp_path / "ml-100k.item").write_text(item, encoding="utf-8")
    return tmp_path


GOOD_INTER = INTER_HEADER + "7\t50\t4\t300\n9\t51\t2\t100\n7\t51\t5\t200\n"
GOOD_ITEM = ITEM_HEADER + "50\tStar Wars (1977)\t1977\tAction Sci-Fi\n51\tSome Film\t1995\tDrama\n" + "".join(
    f"{60 + i}\tFilm {i}\t1995\tDrama Comedy\n" for i in range(4)
)  # 1995 and Drama on 5 items: kept; the rest on fewer than 5: dropped


def test_tiny_folder_loads(tmp_path: Path) -> None:
    g = load_movielens_100k(path=_write_folder(tmp_path, GOOD_INTER, GOOD_ITEM))
    assert (g.num_users, g.num_items, g.num_edges) == (2, 2, 3)
    assert g.timestamp.tolist() == [100, 200, 300]
    assert g.user_ids.tolist() == ["9", "7"] and g.item_ids.tolist() == ["51", "50"]
    assert g.rating.tolist() == [2.0, 5.0, 4.0]


def test_tiny_folder_keeps_feature_values_of_five_items(tmp_path: Path) -> None:
    # Values are counted over the items of the log (as the reference counts reviewed items).
    inter = GOOD_INTER + "".join(f"9\t{60 + i}\t3\t{400 + i}\n" for i in range(4))
    g = load_movielens_100k(path=_write_folder(tmp_path, inter, GOOD_ITEM))
    assert g.item_features["category"].vocab == ("Drama",)  # Comedy on 4 items only
    assert g.item_features["category"].bag(1) == []
    assert g.item_features["brand"].bag(1) == []  # 1977: one movie
    assert g.item_features["brand"].bag(0) == ["1995"]
    assert g.item_features["category"].bag(0) == ["Drama"]


@pytest.mark.parametrize(
    ("inter", "item", "bad"),
    [
        (None, GOOD_ITEM, "ml-100k.inter"),
        ("", GOOD_ITEM, "ml-100k.inter"),
        (INTER_HEADER, GOOD_ITEM, "ml-100k.inter"),
        (GOOD_INTER, None, "ml-100k.item"),
        (GOOD_INTER, "", "ml-100k.item"),
        (None, None, "ml-100k.inter"),
    ],
    ids=["no-inter", "empty-inter", "header-only-inter", "no-item", "empty-item", "empty-dir"],
)
def test_missing_or_empty_file_names_it(
    tmp_path: Path, inter: str | None, item: str | None, bad: str
) -> None:
    folder = _write_folder(tmp_path, inter, item)
    with pytest.raises(DataError) as info:
        load_movielens_100k(path=folder)
    assert bad in str(info.value)


def test_missing_column_names_it(tmp_path: Path) -> None:
    inter = "user_id:token\titem_id:token\trating:float\n7\t50\t4\n"
    with pytest.raises(DataError, match="timestamp"):
        load_movielens_100k(path=_write_folder(tmp_path, inter, GOOD_ITEM))


def test_malformed_rating_names_the_file(tmp_path: Path) -> None:
    inter = INTER_HEADER + "7\t50\tfour\t300\n"
    with pytest.raises(DataError, match="ml-100k.inter"):
        load_movielens_100k(path=_write_folder(tmp_path, inter, GOOD_ITEM))
