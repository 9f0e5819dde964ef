"""Smoke runs of benchmarks/serve_latency.py --fast and benchmarks/serve_fuzz.py (small sizes).

Each starts real servers (about a minute on a busy 2-core machine): marked slow.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("hypothesis")

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return dict(line.split(" ", 1) for line in r.stdout.strip().splitlines()[-20:] if " " in line)


@pytest.mark.slow
def test_serve_latency_fast_mode_prints_its_figures() -> None:
    lines = _run("serve_latency.py", "--fast", "--load-seconds", "2")
    for name in ("p99_ratio_1id", "p99_ratio_100ids", "binary_10k_ratio", "load_rps"):
        assert math.isfinite(float(lines[name])) and float(lines[name]) > 0
    assert int(lines["load_errors"]) == 0
    assert "server_cpu_ratio_100ids_binary" in lines  # the servers' CPU per request, ours / floor
    # The reload: until the new version is served, and while its background work runs.
    assert float(lines["reload_slowest_ms"]) > 0 and float(lines["reload_after_slowest_ms"]) > 0


@pytest.mark.slow
def test_serve_fuzz_small_run_finds_no_5xx() -> None:
    lines = _run("serve_fuzz.py", "--examples", "300", "--server-examples", "100", "--slow", "20",
                 "--non-readers", "3", "--users", "3000")  # fmt: skip
    assert int(lines["fuzz_5xx"]) == 0 and int(lines["fuzz_hangs"]) == 0
    assert lines["slow_closed"] == lines["slow_connections"]
