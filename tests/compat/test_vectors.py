"""The vectors file format of ``bcemb adapt``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bcemb.compat import read_vectors, write_vectors


def test_list_and_column_formats_read_alike(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_vectors(tmp_path / "a.parquet", ["1", "2", "1", "3"], x, extra={"kind": ["user", "user", "item", "item"]})
    a = read_vectors(tmp_path / "a.parquet")  # user "1" and item "1" are different nodes
    pd.DataFrame({"id": [1, 2, 1, 3], "kind": ["user", "user", "item", "item"],
                  **{f"d{j}": x[:, j] for j in range(3)}}).to_parquet(tmp_path / "b.parquet")
    b = read_vectors(tmp_path / "b.parquet")
    for v in (a, b):
        assert v.ids.tolist() == ["1", "2", "1", "3"] and v.dim == 3
        np.testing.assert_array_equal(v.vectors, x)
    assert a.kinds.tolist() == ["user", "user", "item", "item"]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"id": ["a", "a"], "x": [1.0, 2.0]}), "duplicate ids"),
        (pd.DataFrame({"id": ["a", "b"], "x": [1.0, np.nan]}), "NaN"),
        (pd.DataFrame({"id": ["a", "b"], "x": ["p", "q"]}), "non-numeric columns: x"),
        (pd.DataFrame({"id": ["a", "b"], "kind": ["user", "shop"], "x": [1.0, 2.0]}), "'user' or 'item'"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, frame: pd.DataFrame, message: str) -> None:
    frame.to_parquet(tmp_path / "v.parquet")
    with pytest.raises(ValueError, match=message):
        read_vectors(tmp_path / "v.parquet")
