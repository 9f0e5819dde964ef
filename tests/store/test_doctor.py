"""bcemb store doctor: the space of a file of vectors, with and without its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from bcemb.store import EmbeddingStore, publish
from bcemb.store import io as sio
from bcemb.store._testing_gate import write_exact_run
from bcemb.store.cli import app
from bcemb.store.doctor import diagnose

runner = CliRunner()


def _write(path: Path, ids: list[str], vectors: np.ndarray, meta: dict[str, str] | None = None) -> Path:
    sio.write_table(path, sio.embedding_table("user", np.array(ids), np.asarray(vectors, np.float32)), meta)
    return path


def test_export_carries_the_space_and_doctor_confirms_it(store_dir: Path, tmp_path: Path) -> None:
    s = EmbeddingStore(store_dir)
    out = s.export(tmp_path / "v1", version=1)
    part = sorted(out.path.glob("part-*.parquet"))[0]
    meta = pq.read_schema(part).metadata
    assert meta[b"bcemb.space"].decode() == s.space(1)
    assert json.loads((out.path / "_export.json").read_text())["space"] == s.space(1)
    report = diagnose(part, s)
    assert report.verdict == "exact" and report.space == s.space(1) and report.version == 1


def test_doctor_without_metadata_mixed_truncated_and_stale(tmp_path: Path) -> None:
    run = write_exact_run(tmp_path / "run", dims=(8, 12, 12))  # versions 1 and 2 share a dimension
    root = tmp_path / "store"
    publish(run, root, min_probes=8, check_model=False)
    s = EmbeddingStore(root)
    ids = [str(i) for i in s.ids("user")[:40]]
    z0, z2 = np.asarray(s.get(ids, version=0)), np.asarray(s.get(ids, version=2))
    z1 = np.asarray(s.get(ids, version=1))

    bare = diagnose(_write(tmp_path / "v0.parquet", ids, z0), s)  # no metadata at all
    assert bare.verdict == "exact" and bare.version == 0 and bare.space == s.space(0)
    assert any("no bcemb.space metadata" in m for m in bare.messages)

    mixed = _write(tmp_path / "mixed.parquet", ids, np.concatenate([z1[:20], z2[20:]]))
    report = diagnose(mixed, s)
    assert report.mixed and {h.name for h in report.hypotheses if h.rows} == {"v1", "v2"}

    truncated = diagnose(_write(tmp_path / "t.parquet", ids, z2[:, :8]), s)
    assert truncated.verdict == "truncated" and truncated.version == 2

    noisy = z0 + 0.05 * np.random.default_rng(0).standard_normal(z0.shape)
    stale = diagnose(_write(tmp_path / "s.parquet", ids, noisy, {"bcemb.space": "v0-" + "0" * 16}), s)
    assert stale.verdict == "stale" and stale.version == 0
    assert any("not a current space" in m for m in stale.messages)

    code = runner.invoke(app, ["doctor", str(mixed), "--store", str(root)])
    assert code.exit_code == 3 and "MIXES" in code.stdout
    code = runner.invoke(app, ["doctor", str(tmp_path / "v0.parquet"), "--store", str(root), "--json"])
    assert code.exit_code == 0 and json.loads(code.stdout)["verdict"] == "exact"
    code = runner.invoke(app, ["doctor", str(tmp_path / "nope.parquet"), "--store", str(root)])
    assert code.exit_code == 1 and "no file" in code.stderr
