"""``bcemb adapt`` end to end: files in both formats, the report, publishing into the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bcemb.cli import app
from bcemb.compat import read_vectors, write_vectors
from bcemb.store import EmbeddingStore


def _files(tmp_path: Path, seed: int = 0) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, d_old, d_new = 400, 6, 8
    label = rng.integers(0, 3, n)
    new = (rng.normal(size=(3, d_new))[label] + 0.5 * rng.normal(size=(n, d_new))).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(d_new, d_new)))
    old = (new @ q[:d_old].T + 0.01 * rng.normal(size=(n, d_old))).astype(np.float32)
    ids = np.array([f"doc{i}" for i in range(n)])
    # OLD: one list column; NEW: one column per dimension, 50 ids that OLD lacks
    write_vectors(tmp_path / "old.parquet", ids[:350], old[:350], extra={"topic": [f"t{c}" for c in label[:350]]})
    pd.DataFrame({"id": ids[50:], **{f"d{j}": new[50:, j] for j in range(d_new)}}).to_parquet(tmp_path / "new.parquet")
    return tmp_path / "old.parquet", tmp_path / "new.parquet", q[:d_old]


def _run(*args: object):  # noqa: ANN202
    return CliRunner().invoke(app, ["adapt", *[str(a) for a in args]])


def test_adapt_reports_and_publishes(tmp_path: Path) -> None:
    old, new, _ = _files(tmp_path)
    store = tmp_path / "store"
    result = _run("--old", old, "--new", new, "--family", "procrustes", "--label", "topic",
                  "--store", store, "--report", tmp_path / "rep.json")
    assert result.exit_code == 0, result.output
    assert "fitted on 240 of 300 shared ids (closed-form), held out 60" in result.output
    assert "own old vector in top 10 1.0000" in result.output
    assert "published version 1 (no model)" in result.output
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["probe"]["ratio"] > 0.95 and rep["holdout_relative_error"] < 0.05

    s = EmbeddingStore(store)
    assert s.latest == 1 and s.dim(0) == 6 and s.dim(1) == 8
    assert [r["model"] for r in s.describe()] == ["none", "none"]
    nv = read_vectors(new)
    got = np.asarray(s.get(["doc100"], kind="item", version=0))
    row = list(nv.ids).index("doc100")
    expected = nv.vectors[row] @ s.chain.matrix(0).numpy().T
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-6)
    ls = CliRunner().invoke(app, ["store", "ls", "--store", str(store)])
    assert ls.exit_code == 0 and "none" in ls.stdout and "adapt-procrustes" in ls.stdout

    # the next model: NEW becomes the old side, published as version 2 of the same store
    rng = np.random.default_rng(1)
    write_vectors(tmp_path / "newer.parquet", nv.ids, nv.vectors @ rng.normal(size=(8, 8)).astype(np.float32))
    again = _run("--old", new, "--new", tmp_path / "newer.parquet", "--family", "linear", "--store", store)
    assert again.exit_code == 0, again.output
    assert EmbeddingStore(store).latest == 2
    # OLD must be the store's latest vectors
    wrong = _run("--old", old, "--new", tmp_path / "newer.parquet", "--store", store)
    assert wrong.exit_code == 1 and "not a continuation" in wrong.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "spline"], "unknown family"),
        (["--id-col", "key"], "no id column 'key'"),
        (["--label", "colour"], "no label column 'colour'"),
    ],
)
def test_adapt_bad_input_fails_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    old, new, _ = _files(tmp_path)
    result = _run("--old", old, "--new", new, *args)
    assert result.exit_code != 0 and message in result.output
