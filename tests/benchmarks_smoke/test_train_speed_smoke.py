"""Smoke test of benchmarks/train_speed.py on a tiny synthetic graph (a few seconds)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_speed.py"


def _load():
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def test_train_speed_runs_on_a_tiny_graph(capsys) -> None:
    bench = _load()
    threads = torch.get_num_threads()
    try:
        rows = bench.main(
            [
                "--dataset", "musical", "--synthetic-size", "300,150,4000",
                "--sizes", "quick", "--steps", "2", "--warmup", "1", "--versions", "0,1",
                "--with-alignment", "--threads", "1", "--device", "cpu", "--dense-repeats", "2",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "s/epoch" in out and "matmul GFLOP/s" in out and "torch " in out
    # k=0: ours, ours-fast (no determinism), plain PyG; k=1 adds the BC-Aligner step.
    assert [(r.k, r.variant) for r in rows] == [
        (0, "ours"), (0, "ours-fast"), (0, "plain"), (1, "ours"), (1, "ours-fast"), (1, "plain"), (1, "bc"),
    ]
    for r in rows:
        assert r.s_step > 0 and r.steps_timed >= 2 and r.mm_gflops > 0
        assert r.steps_per_epoch == math.ceil(r.train_edges / r.batch)
        assert r.flops > r.dense_flops > 0
    assert rows[6].flops > rows[3].flops  # the alignment loss adds work
    assert rows[0].dense_rate > 0 and rows[6].bc_floor > 1
    lines = out.strip().splitlines()
    # the figures close the output, ratio_vs_plain_pyg last
    assert [line.split()[0] for line in lines[-3:]] == ["bc_step_ratio_max", "dense_rate", "ratio_vs_plain_pyg"]
    assert all(float(line.split()[1]) > 0 for line in lines[-3:])
    assert any(line.startswith("deterministic_cost_max ") for line in lines)


def test_flop_formula_matches_the_documented_terms() -> None:
    bench = _load()
    total, dense, sparse = bench.step_flops(
        nodes=100, nnz=1000, layers=2, dim=8, batch=10, feature_entries=50, params=0
    )
    assert dense == 2 * 12 * 100 * 8 * 8
    assert sparse == 2 * 4 * 1000 * 8
    assert total == dense + sparse + 2 * 30 * 100 * 8 + 2 * (100 + 50) * 8 + 30 * 10 * 8


def test_device_option_is_parsed_and_checked() -> None:
    bench = _load()
    parser = bench.build_parser()
    assert parser.parse_args([]).device == "cpu"  # CPU unless asked
    assert parser.parse_args(["--device", "cuda"]).device == "cuda"
    assert parser.parse_args(["--device", "auto"]).device == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "tpu"])
    if not torch.cuda.is_available():
        # asked for CUDA where there is none: a clear error before any data is loaded
        with pytest.raises(ValueError, match="CUDA is not available"):
            bench.main(["--device", "cuda", "--dataset", "musical"])
