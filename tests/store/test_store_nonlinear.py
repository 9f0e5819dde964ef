"""A store whose chain has a non-linear link (issue 10 point 3): applied step by step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from typer.testing import CliRunner

from bcemb.store import EmbeddingStore, publish
from bcemb.store._testing import write_fake_run
from bcemb.store.cli import app


def test_nonlinear_link_is_applied_step_by_step(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", dims=(8, 12, 16), transform_kinds=("mlp", "linear"),
                         aligned=True, seed=3)
    root = tmp_path / "store"
    publish(run, root, min_probes=16, rows_per_part=64)
    s = EmbeddingStore(root)
    assert not s.chain.linear and s.chain.linear_to(1) and not s.chain.linear_to(0)
    ids = [str(i) for i in s.ids("user")[:5]]
    latest = torch.from_numpy(s.get(ids))
    expected = s.chain.apply_stepwise(latest, 0).numpy()
    np.testing.assert_allclose(s.get(ids, version=0), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.transform(latest.numpy(), version=0), expected, rtol=1e-5, atol=1e-6)
    assert [r["applied"] for r in s.describe()] == ["step by step", "one matrix", "latest"]
    # The probes of the aligned run are the chain's own output: the check finds no error.
    report = s.check()
    assert report.ok and max(v.mean_error for v in report.versions) < 1e-4

    result = CliRunner().invoke(app, ["ls", "--store", str(root)])
    assert result.exit_code == 0 and "step by step" in result.stdout

    out = tmp_path / "v0"
    s.export(out, version=0)
    table = pq.read_table(sorted(out.glob("*.parquet"))[0])
    first = table.column("id").to_pylist()[0]
    kind = table.column("kind").to_pylist()[0]
    np.testing.assert_allclose(
        np.asarray(table.column("embedding").to_pylist()[0], dtype=np.float32),
        s.get([first], version=0, kind=kind)[0], rtol=1e-5, atol=1e-6,
    )
