"""Smoke tests of the store benchmarks (tiny sizes): they run and print their last lines."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _values(out: str) -> dict[str, str]:
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines() if " " in line}


def test_store_read(capsys: pytest.CaptureFixture[str]) -> None:
    _load("store_read").main(["--users", "300", "--items", "50", "--dims", "16,24,32",
                              "--sizes", "1,100", "--repeats", "20"])
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("get_ratio_100 ")
    assert float(_values(out)["get_ratio_1"]) > 0


@pytest.mark.slow
def test_store_corruption(capsys: pytest.CaptureFixture[str]) -> None:
    _load("store_corruption").main(["--bit-flips", "0"])
    values = _values(capsys.readouterr().out)
    assert values["wrong_vectors_served"] == "0" and values["crashes"] == "0"
    assert values["bad_file_not_named"] == "0"


@pytest.mark.slow
def test_store_kill(capsys: pytest.CaptureFixture[str]) -> None:
    _load("store_kill").main(["--trials", "2", "--users", "2000", "--items", "500"])
    assert _values(capsys.readouterr().out)["damaged_stores"] == "0"


def test_gate_bootstrap(capsys: pytest.CaptureFixture[str]) -> None:
    _load("gate_bootstrap").main(["--sizes", "50,200", "--resamples", "50", "--repeats", "2"])
    values = _values(capsys.readouterr().out)
    assert set(values) == {f"{k}_{n}" for k in ("interval_s", "interval_cpu_s", "ratio_vs_one_auc") for n in (50, 200)}
    assert float(values["interval_s_200"]) > 0


def test_export_speed(capsys: pytest.CaptureFixture[str]) -> None:
    _load("export_speed").main(["--rows", "3000", "--dim", "32", "--old-dim", "16", "--no-dask",
                                "--repeats", "1"])
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("export_ratio ")
    values = _values(out)
    assert float(values["export_ratio"]) > 0 and float(values["export_cpu_s"]) > 0
