"""Own data through the CLI (issue 10 point 4) and issue 12's constant-ratings defect."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bcemb.cli import app

TINY = ["--set", "sizes=1x8,1x8,1x8", "--set", "times=0.5,0.7,0.85,1.0", "--set", "train.epochs=2",
        "--set", "train.eval_every=1", "--set", "train.warmup_epochs=1", "--set", "consumer.seeds=1",
        "--set", "consumer.epochs=3", "--set", "consumer.hidden=8", "--set", "consumer.dropout=0"]


def _write(path: Path, n: int = 600, *, constant: bool = False) -> None:
    rng = np.random.default_rng(0)
    pd.DataFrame({
        "who": rng.integers(0, 40, n), "what": rng.integers(0, 30, n),
        "at": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%dT%H:%M:%S"),
        "stars": np.full(n, 5) if constant else rng.integers(1, 6, n),
        "tags": [f"a{i % 3}|b{i % 4}" for i in rng.integers(0, 30, n)],
    }).to_csv(path, index=False)


LOG_OPTS = ["--log-option", "user=who", "--log-option", "item=what", "--log-option", "time=at",
            "--log-option", "rating=stars", "--log-option", "feature=tags"]


def test_data_stats_on_own_log(tmp_path: Path) -> None:
    _write(tmp_path / "events.csv")
    result = CliRunner().invoke(app, ["data", "stats", "--dataset", "table", "--log", str(tmp_path / "events.csv"), *LOG_OPTS])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("events: 40 users, 30 items, 600 edges")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log-option", "user=nobody"], "no column 'nobody'"),
        (["--log-option", "colour=red"], "unknown key"),
        ([], None),  # a missing --log is named
    ],
)
def test_bad_own_data_options_fail_clearly(tmp_path: Path, args: list[str], message: str | None) -> None:
    _write(tmp_path / "events.csv")
    log = ["--log", str(tmp_path / "events.csv")] if message else []
    result = CliRunner().invoke(app, ["data", "stats", "--dataset", "table", *log, *args])
    assert result.exit_code != 0
    assert (message or "needs --log") in result.output


def test_issue12_constant_ratings_benchmark_skips_rating_tasks(tmp_path: Path, caplog) -> None:
    _write(tmp_path / "events.csv", constant=True)
    out = tmp_path / "bench"
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(app, [
            "benchmark", "--dataset", "table", "--log", str(tmp_path / "events.csv"), *LOG_OPTS,
            "--methods", "bc-aligner", "--lams", "", "--out", str(out), "--quiet", *TINY,
        ])
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(out / "results.parquet")
    auc = rows[rows.metric == "auc"]
    assert set(auc.task) == {"user_activity"}  # the four rating tasks cannot be labelled
    assert auc.value.between(0, 1).all() and rows.value.notna().all()
    assert "edge_rating skipped" in caplog.text and "every rating is 5" in caplog.text
    assert "Recall@50,100 ranks all" in caplog.text  # 30 items: K >= items is trivial
