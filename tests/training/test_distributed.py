"""Data-parallel training: 2 processes (torchrun, gloo) train what 1 process does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bcemb.training.distributed import average_gradients, shard, world

ARGS = ["--size", "200,150,3000", "--epochs", "3", "--batch", "256", "--dim", "8"]


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def test_single_process_helpers_are_no_ops():
    assert world() == (0, 1)
    t = torch.arange(6)
    assert shard((t,))[0] is t
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    average_gradients([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))


@pytest.mark.slow  # three process starts (~25 s of CPU); run with -m slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_processes_train_what_one_process_trains(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    run = [sys.executable, "-m", "bcemb.experiments.ddp_run"]
    subprocess.run([*run, "--out", str(one), *ARGS], env=_env(), check=True, timeout=600)
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "bcemb.experiments.ddp_run", "--out", str(two), *ARGS],
        env=_env(), check=True, timeout=600, capture_output=True,
    )
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    # Both replicas end as the same model.
    other = json.loads((tmp_path / "two.rank1.json").read_text())
    assert other["checksum"] == pytest.approx(b["checksum"], rel=1e-6)
    # Same loss curve within tolerance (BatchNorm statistics are per rank's nodes).
    la, lb = [r["loss"] for r in a["curve"]], [r["loss"] for r in b["curve"]]
    assert len(la) == len(lb) == 3
    assert la[-1] < la[0] and lb[-1] < lb[0]
    for x, y in zip(la, lb, strict=True):
        assert abs(x - y) < 0.05 * x
