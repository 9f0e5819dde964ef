"""Smoke tests of ``bcemb store ...`` (the typer app, through CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from bcemb.store import EmbeddingStore
from bcemb.store.cli import app

runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_publish_ls_get_export_check_usage(run_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, out, _ = invoke("publish", run_dir, "--store", store, "--min-probes", 16)
    assert code == 0 and f"published version 2 of {run_dir} to {store}" in out
    code, out, _ = invoke("ls", "--store", store)
    assert code == 0 and "2*" in out and "latest version 2" in out
    code, out, _ = invoke("ls", "--store", store, "--json")
    assert [v["dim"] for v in json.loads(out)["versions"]] == [8, 12, 16]

    s = EmbeddingStore(store)
    ids = [str(i) for i in s.ids("user")[:3]]
    code, out, _ = invoke("get", *ids, "--store", store, "--version", 0)
    assert code == 0
    payload = json.loads(out)
    assert payload["version"] == 0 and payload["ids"] == ids
    np.testing.assert_allclose(
        np.array(payload["vectors"], dtype=np.float32), s.get(ids, version=0), rtol=1e-6
    )
    code, out, _ = invoke(
        "get", *ids, "--store", store, "--out", tmp_path / "g.parquet", "--kind", "user"
    )
    assert code == 0 and str(tmp_path / "g.parquet") in out
    assert pq.read_table(tmp_path / "g.parquet").num_rows == 3

    code, out, _ = invoke("export", "--store", store, "--version", 1, "--out", tmp_path / "exp")
    assert code == 0 and f"to {tmp_path / 'exp'}" in out and "rows/s" in out
    assert (tmp_path / "exp" / "_export.json").exists()

    code, out, _ = invoke("check", "--store", store)
    assert code == 0 and "all files intact" in out and "mean L2" in out
    code, out, _ = invoke("check", "--store", store, "--json")
    assert json.loads(out)["ok"] is True
    code, _, err = invoke("check", "--store", store, "--fail-above", 1e-9)
    assert code == 1 and "alignment error above" in err

    code, out, _ = invoke("usage", "--store", store)
    assert code == 0 and "keep-latest" in out and "keep-all" in out and "saved" in out


def test_failures_exit_nonzero_with_a_message(
    run_dir: Path, store_dir: Path, tmp_path: Path
) -> None:
    code, _, err = invoke("ls", "--store", tmp_path / "missing")
    assert code == 1 and "error: no store at" in err
    code, _, err = invoke("get", "nope", "--store", store_dir)
    assert code == 1 and "unknown user ids (1 of 1): 'nope'" in err
    code, _, err = invoke("get", "x", "--store", store_dir, "--version", 9)
    assert code == 1 and "unknown version 9" in err
    code, _, err = invoke("publish", run_dir, "--store", store_dir)
    assert code == 1 and "nothing to publish" in err
    invoke("export", "--store", store_dir, "--out", tmp_path / "e")
    code, _, err = invoke("export", "--store", store_dir, "--out", tmp_path / "e")
    assert code == 1 and "--overwrite" in err
    code, _, err = invoke("retire", "--store", store_dir, "--version", 2)
    assert code == 1 and "is the latest" in err
    (store_dir / "versions/2/probes.parquet").write_bytes(b"garbage")
    code, _, err = invoke("check", "--store", store_dir)
    assert code == 1 and "probes.parquet" in err


def test_retire_and_gc(run_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert invoke("publish", run_dir, "--store", store, "--keep-all")[0] == 0
    code, out, _ = invoke("retire", "--store", store, "--version", 0)
    assert code == 0 and "retired the embeddings of version 0" in out
    code, out, _ = invoke("gc", "--store", store)
    assert code == 0 and "removed 0 leftover" in out
