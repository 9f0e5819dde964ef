"""The ``table`` dataset source: your own interaction log as CSV or Parquet (issue 10 point 4)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bcemb.data import ConsumerTasks, TimeSlices, load_dataset
from bcemb.data.datasets.table import MIN_ROWS, load_table, parse_log_options
from bcemb.data.graph import DataError


def _log(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 30, n)
    items = rng.integers(0, 20, n)
    return pd.DataFrame({
        "uid": [f"u{u}" for u in users],
        "sku": items,  # integer ids: read as strings
        "when": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
        "stars": rng.integers(1, 6, n),
        "tags": [f"t{i % 3}|t{i % 5}" if i % 4 else "" for i in items],
        "brand": [f"b{i % 2}" for i in items],
    })


OPTS = dict(user="uid", item="sku", time="when", rating="stars", features=["tags", "brand"])


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".csv.gz"])
def test_reads_csv_and_parquet_alike(tmp_path: Path, suffix: str) -> None:
    frame = _log()
    path = tmp_path / f"events{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    g = load_dataset("table", log=path, **OPTS)
    assert g.num_edges == len(frame) and g.name == "events"
    assert set(g.user_ids) == set(frame.uid) and set(g.item_ids) == {str(i) for i in frame.sku}
    assert np.all(np.diff(g.timestamp) >= 0) and g.timestamp[0] == pd.Timestamp("2024-01-01", tz="UTC").value // 10**9
    # the first event's rating, and multi-valued features as the union of the item's values
    assert g.rating[0] == frame.stars[0]
    item = str(frame.sku[1])
    row = list(g.item_ids).index(item)
    expected = set(frame.tags[1].split("|")) - {""}
    assert set(g.item_features["tags"].bag(row)) == expected
    assert g.item_features["brand"].bag(row) == [frame.brand[1]]


def test_numeric_times_and_no_rating(tmp_path: Path, caplog) -> None:
    frame = _log().assign(when=np.arange(200) * 10)
    frame.to_csv(tmp_path / "e.csv", index=False)
    with caplog.at_level(logging.WARNING):
        g = load_table(log=tmp_path / "e.csv", user="uid", item="sku", time="when")
    assert g.timestamp.dtype == np.int64 and g.timestamp[-1] == 1990
    assert "no rating column" in caplog.text
    tasks = ConsumerTasks(TimeSlices(g), min_item_ratings=2)
    assert tasks.tasks == ("user_activity",)  # the rating tasks cannot be labelled


def test_missing_columns_are_named(tmp_path: Path) -> None:
    _log().to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(DataError, match=r"no column 'user_id', 'timestamp'.*the file has 'uid'"):
        load_table(log=tmp_path / "e.csv", item="sku")
    with pytest.raises(DataError, match="no column 'genre'"):
        load_table(log=tmp_path / "e.csv", **{**OPTS, "features": ["genre"]})
    with pytest.raises(DataError, match="no interaction log"):
        load_table(log=tmp_path / "missing.csv")


def test_unparsable_times_and_ratings(tmp_path: Path) -> None:
    frame = _log()
    frame.loc[5, "when"] = "yesterday"
    frame.to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(DataError, match=r"'when': 1 of 200 times cannot be parsed.*row 6: 'yesterday'"):
        load_table(log=tmp_path / "e.csv", **OPTS)
    frame = _log().astype({"stars": object})
    frame.loc[3, "stars"] = "five"
    frame.to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataError, match=r"'stars': 1 ratings are not numbers \(row 4: 'five'\)"):
        load_table(log=tmp_path / "r.csv", **OPTS)
    frame = _log().assign(when=pd.date_range("2024-01-01", periods=200, freq="D").strftime("%d/%m/%Y"))
    frame.to_csv(tmp_path / "f.csv", index=False)
    g = load_table(log=tmp_path / "f.csv", **OPTS, time_format="%d/%m/%Y")
    assert g.timestamp[1] - g.timestamp[0] == 86400


def test_too_few_rows_and_empty_ids(tmp_path: Path) -> None:
    _log(MIN_ROWS - 1).to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(DataError, match=f"has {MIN_ROWS - 1} rows; at least {MIN_ROWS}"):
        load_table(log=tmp_path / "e.csv", **OPTS)
    frame = _log()
    frame.loc[7, "uid"] = ""
    frame.to_csv(tmp_path / "u.csv", index=False)
    with pytest.raises(DataError, match=r"'uid': 1 empty user ids \(first at row 8\)"):
        load_table(log=tmp_path / "u.csv", **OPTS)


def test_parse_log_options() -> None:
    assert parse_log_options(["user=uid", "feature=a", "feature=b", "sep=;", "time-format=%Y"]) == {
        "user": "uid", "features": ["a", "b"], "feature_sep": ";", "time_format": "%Y",
    }
    for bad, msg in ((["user"], "KEY=VALUE"), (["colour=red"], "unknown key"), (["user=a", "user=b"], "twice")):
        with pytest.raises(ValueError, match=msg):
            parse_log_options(bad)
