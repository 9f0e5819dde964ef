"""Tests of the Amazon Reviews loaders on tiny files written by the tests."""

from __future__ import annotations

import gzip
import json
import re
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bcemb.data.datasets import DATASETS, load_dataset
from bcemb.data.datasets.amazon import load_amazon
from bcemb.data.graph import DataError


def _write(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _write_records(path: Path, records: list[dict]) -> Path:
    return _write(path, [json.dumps(r) for r in records])


def _review18(user: str, asin: str, overall: float, t: int) -> dict:
    return {
        "overall": overall,
        "verified": True,
        "reviewTime": "01 1, 2016",
        "reviewerID": user,
        "asin": asin,
        "reviewText": "fine",
        "summary": "ok",
        "unixReviewTime": t,
    }


# File order is not time order; itemC has no metadata.
REVIEWS_2018 = [
    _review18("u2", "B", 4.0, 200),
    _review18("u1", "A", 5.0, 100),
    _review18("u1", "B", 3.0, 300),
    _review18("u3", "C", 1.0, 150),
    _review18("u3", "A", 2.0, 400),
]

META_2018 = [
    {
        "asin": "A",
        "title": "Chips",
        "brand": " Acme ",
        "category": [
            "Grocery & Gourmet Food",
            "Snacks",
            "</span></span></span>",
            "Foo &amp; Bar",
            "x" * 150,
            "  Chips  ",
            "",
        ],
    },
    {"asin": "B", "brand": "Acme", "category": ["Grocery & Gourmet Food", "Snacks"]},
    {"asin": "A", "brand": "Other", "category": ["Repeated"]},  # a repeat: ignored
    {"asin": "D", "brand": "Zed", "category": ["Unreviewed"]},
]


@pytest.fixture
def files_2018(tmp_path: Path) -> tuple[Path, Path]:
    reviews = _write_records(tmp_path / "Grocery_5.json.gz", REVIEWS_2018)
    meta = _write_records(tmp_path / "meta_Grocery.json.gz", META_2018)
    return reviews, meta


def test_registered() -> None:
    assert "amazon" in DATASETS
    assert DATASETS.get("amazon") is load_amazon


def test_2018_reviews_only_reindexes_by_first_appearance(files_2018: tuple[Path, Path]) -> None:
    g = load_amazon(reviews=files_2018[0])
    assert (g.num_users, g.num_items, g.num_edges) == (3, 3, 5)
    # time order: (u1,A,100) (u3,C,150) (u2,B,200) (u1,B,300) (u3,A,400)
    assert g.user_ids.tolist() == ["u1", "u3", "u2"]
    assert g.item_ids.tolist() == ["A", "C", "B"]
    assert g.user.tolist() == [0, 1, 2, 0, 1]
    assert g.item.tolist() == [0, 1, 2, 2, 0]
    assert g.rating.tolist() == [5.0, 1.0, 4.0, 3.0, 2.0]
    assert g.timestamp.tolist() == [100, 150, 200, 300, 400]
    assert g.item_features == {}
    assert g.name == "amazon-2018:Grocery_5"


def test_2018_with_meta_drops_items_without_metadata(files_2018: tuple[Path, Path]) -> None:
    reviews, meta = files_2018
    g = load_amazon(reviews=reviews, meta=meta, min_feature_count=1, name="groc")
    assert g.name == "groc"
    assert (g.num_users, g.num_items, g.num_edges) == (3, 2, 4)
    assert g.user_ids.tolist() == ["u1", "u2", "u3"]
    assert g.item_ids.tolist() == ["A", "B"]
    assert g.user.tolist() == [0, 1, 0, 2]
    assert g.item.tolist() == [0, 1, 1, 0]
    assert g.rating.tolist() == [5.0, 4.0, 3.0, 2.0]
    assert g.timestamp.tolist() == [100, 200, 300, 400]


def test_2018_features_clean_html_and_keep_first_repeat(files_2018: tuple[Path, Path]) -> None:
    g = load_amazon(reviews=files_2018[0], meta=files_2018[1], min_feature_count=1)
    brand, category = g.item_features["brand"], g.item_features["category"]
    assert brand.vocab == ("Acme",)  # stripped; the repeat's "Other" and unreviewed "Zed" unused
    assert brand.bag(0) == ["Acme"] and brand.bag(1) == ["Acme"]
    # HTML fragments, entities, overlong and empty entries are dropped; whitespace stripped
    assert category.bag(0) == ["Chips", "Grocery & Gourmet Food", "Snacks"]
    assert category.bag(1) == ["Grocery & Gourmet Food", "Snacks"]
    assert set(category.vocab) == {"Chips", "Grocery & Gourmet Food", "Snacks"}


def test_min_feature_count_drops_rare_values(files_2018: tuple[Path, Path]) -> None:
    g = load_amazon(reviews=files_2018[0], meta=files_2018[1], min_feature_count=2)
    assert g.item_features["category"].vocab == ("Grocery & Gourmet Food", "Snacks")
    assert g.item_features["brand"].vocab == ("Acme",)
    g3 = load_amazon(reviews=files_2018[0], meta=files_2018[1], min_feature_count=3)
    assert g3.item_features["category"].vocab == ()
    assert g3.item_features["category"].offsets.tolist() == [0, 0, 0]


def test_plain_json_and_blank_lines(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in REVIEWS_2018]
    lines.insert(2, "")
    reviews = _write(tmp_path / "reviews.json", lines)
    g = load_amazon(reviews=str(reviews))
    assert g.num_edges == 5 and g.num_users == 3


def test_load_dataset_by_name(files_2018: tuple[Path, Path]) -> None:
    g = load_dataset("amazon", reviews=files_2018[0], meta=files_2018[1])
    assert g.num_edges == 4


def _review23(user: str, parent: str, rating: float, t_ms: int) -> dict:
    return {
        "rating": rating,
        "title": "t",
        "text": "x",
        "images": [],
        "asin": parent + "-v",
        "parent_asin": parent,
        "user_id": user,
        "timestamp": t_ms,
        "helpful_vote": 0,
        "verified_purchase": True,
    }


REVIEWS_2023 = [
    _review23("UA", "P1", 5.0, 1_600_000_000_900),
    _review23("UB", "P2", 4.0, 1_600_000_000_100),  # same second, earlier millisecond
    _review23("UC", "P3", 1.0, 1_599_000_000_000),  # P3 has no metadata
    _review23("UB", "P1", 3.0, 1_600_000_100_000),
]

META_2023 = [
    {
        "main_category": "Grocery",
        "title": "a",
        "store": "Brandy",
        "categories": ["Food", "Tea"],
        "parent_asin": "P1",
    },
    {"main_category": "Grocery", "title": "b", "store": "", "categories": [], "parent_asin": "P2"},
    {"main_category": "Grocery", "store": None, "parent_asin": "P9"},
]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_2023_jsonl(tmp_path: Path, suffix: str) -> None:
    reviews = _write_records(tmp_path / f"Grocery{suffix}", REVIEWS_2023)
    meta = _write_records(tmp_path / f"meta_Grocery{suffix}", META_2023)
    g = load_amazon(reviews=reviews, meta=meta, min_feature_count=1)
    # P3's review is dropped; UB's 100 ms edge precedes UA's 900 ms edge in the same second
    assert g.user_ids.tolist() == ["UB", "UA"]
    assert g.item_ids.tolist() == ["P2", "P1"]
    assert g.user.tolist() == [0, 1, 0]
    assert g.item.tolist() == [0, 1, 1]
    assert g.rating.tolist() == [4.0, 5.0, 3.0]
    assert g.timestamp.tolist() == [1_600_000_000, 1_600_000_000, 1_600_000_100]
    assert g.item_features["brand"].bag(0) == []  # empty store skipped
    assert g.item_features["brand"].bag(1) == ["Brandy"]
    assert g.item_features["category"].bag(1) == ["Food", "Tea"]
    assert g.name == "amazon-2023:Grocery"

    g_all = load_amazon(reviews=reviews)
    assert (g_all.num_users, g_all.num_items, g_all.num_edges) == (3, 3, 4)
    assert g_all.user_ids[0] == "UC"


# ---- bad input -------------------------------------------------------------------------------


def _raises(match: str) -> AbstractContextManager[Any]:
    return pytest.raises(DataError, match=match)


def test_missing_file(tmp_path: Path, files_2018: tuple[Path, Path]) -> None:
    missing = tmp_path / "nope.json.gz"
    with _raises(f"missing file: {re.escape(str(missing))}"):
        load_amazon(reviews=missing)
    with _raises(re.escape(str(missing))):
        load_amazon(reviews=files_2018[0], meta=missing)


def test_truncated_gzip(tmp_path: Path) -> None:
    good = _write_records(tmp_path / "good.json.gz", REVIEWS_2018 * 200)
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(good.read_bytes()[:-30])
    with _raises(f"broken gzip file {re.escape(str(broken))}"):
        load_amazon(reviews=broken)


def test_gz_suffix_without_gzip_content(tmp_path: Path) -> None:
    fake = _write_records(tmp_path / "fake.json", REVIEWS_2018).rename(tmp_path / "fake.json.gz")
    with _raises(f"broken gzip file {re.escape(str(fake))}"):
        load_amazon(reviews=fake)


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_malformed_json_names_file_and_line(tmp_path: Path, suffix: str) -> None:
    lines = [json.dumps(r) for r in REVIEWS_2018]
    lines[2] = lines[2][:-5]  # cut the closing brace off line 3
    path = _write(tmp_path / f"bad{suffix}", lines)
    with _raises(f"{re.escape(str(path))}, line 3: malformed JSON"):
        load_amazon(reviews=path)


def test_non_object_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "list.json", [json.dumps(REVIEWS_2018[0]), "[1, 2]"])
    with _raises("line 2: expected a JSON object"):
        load_amazon(reviews=path)


def test_missing_key_names_file_line_and_key(tmp_path: Path) -> None:
    records = [dict(r) for r in REVIEWS_2018]
    del records[1]["unixReviewTime"]
    path = _write_records(tmp_path / "r.json", records)
    with _raises(f"{re.escape(str(path))}, line 2: missing key 'unixReviewTime'"):
        load_amazon(reviews=path)


def test_missing_key_in_meta(tmp_path: Path, files_2018: tuple[Path, Path]) -> None:
    meta = _write_records(tmp_path / "meta.json", [META_2018[0], {"brand": "x"}])
    with _raises(f"{re.escape(str(meta))}, line 2: missing key 'asin'"):
        load_amazon(reviews=files_2018[0], meta=meta)


def test_meta_of_other_release(tmp_path: Path, files_2018: tuple[Path, Path]) -> None:
    meta = _write_records(tmp_path / "meta.jsonl", META_2023)
    with _raises("line 1: missing key 'asin'.*2018"):
        load_amazon(reviews=files_2018[0], meta=meta)


def test_no_reviewed_item_in_meta(tmp_path: Path, files_2018: tuple[Path, Path]) -> None:
    meta = _write_records(tmp_path / "meta.json", [{"asin": "Z", "brand": "b"}])
    with _raises("none of the reviews"):
        load_amazon(reviews=files_2018[0], meta=meta)


@pytest.mark.parametrize(
    "name,data", [("e.json", b""), ("blank.json", b"\n  \n"), ("e.json.gz", None)]
)
def test_empty_file(tmp_path: Path, name: str, data: bytes | None) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"") if data is None else data)
    with _raises(f"empty file: {re.escape(str(path))}"):
        load_amazon(reviews=path)


def test_unknown_format(tmp_path: Path) -> None:
    path = _write_records(tmp_path / "r.json", [{"stars": 5, "who": "x"}])
    with _raises("line 1: not an Amazon review"):
        load_amazon(reviews=path)


def test_bad_rating(tmp_path: Path) -> None:
    records = [dict(r) for r in REVIEWS_2018]
    records[3]["overall"] = "five"
    path = _write_records(tmp_path / "r.json", records)
    with _raises("line 4: rating 'five'"):
        load_amazon(reviews=path)
    records[3]["overall"] = 7.0
    path = _write_records(tmp_path / "r.json", records)
    with _raises("line 4: rating 7.0 is outside 1..5"):
        load_amazon(reviews=path)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_min_feature_count(files_2018: tuple[Path, Path], bad: object) -> None:
    with pytest.raises(ValueError, match="min_feature_count"):
        load_amazon(reviews=files_2018[0], min_feature_count=bad)  # type: ignore[arg-type]


def test_ratings_are_float32_and_ids_are_strings(files_2018: tuple[Path, Path]) -> None:
    g = load_amazon(reviews=files_2018[0])
    assert g.rating.dtype == np.float32
    assert g.timestamp.dtype == np.int64
    assert g.user_ids.dtype.kind == "U" and g.item_ids.dtype.kind == "U"


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    lines = [json.dumps(REVIEWS_2018[0]), "", json.dumps(REVIEWS_2018[1]), "{not json"]
    path = _write(tmp_path / "r.json", lines)
    with _raises(f"{re.escape(str(path))}, line 4: malformed JSON"):
        load_amazon(reviews=path)


def test_invalid_utf8_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(json.dumps(REVIEWS_2018[0]).encode() + b"\n\xff\xfe{}\n")
    with _raises("line 2: malformed JSON"):
        load_amazon(reviews=path)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps(r) for r in REVIEWS_2018).encode())
    assert load_amazon(reviews=path).num_edges == 5
