"""Tests of ``bcemb data stats`` through typer's CliRunner."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from bcemb.cli import app
from bcemb.data import DATASETS, TASKS, ConsumerTasks, TimeSlices
from bcemb.data.datasets.synthetic import make_synthetic
from bcemb.data.stats import slice_table

SYNTH = {"num_users": 300, "num_items": 200, "num_edges": 6000}
SYNTH_ARGS = [a for k, v in SYNTH.items() for a in ("--synthetic", f"{k}={v}")]


def _text(result) -> str:  # noqa: ANN001
    """stdout and stderr with rich's box drawing and line wrapping flattened."""
    out = result.output  # Click >= 8.2 mixes stderr in
    try:
        if result.stderr not in out:
            out += result.stderr
    except ValueError:  # stderr not captured separately on older Click
        pass
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())


@pytest.fixture(scope="module")
def stats_result():  # noqa: ANN201
    return CliRunner().invoke(app, ["data", "stats", "--dataset", "synthetic", *SYNTH_ARGS])


def test_stats_synthetic_prints_a_row_per_version(stats_result) -> None:  # noqa: ANN001
    assert stats_result.exit_code == 0, stats_result.output
    lines = stats_result.stdout.splitlines()
    g = make_synthetic(**SYNTH)  # the command's default seed
    assert lines[0] == (
        f"synthetic: {g.num_users:,} users, {g.num_items:,} items, {g.num_edges:,} edges"
    )
    header = lines[1].split()
    assert header[:3] == ["k", "t", "users"]
    for col in ("items", "edges", "train_edges", "val_edges", "new_users", *TASKS):
        assert col in header
    rows = [line.split() for line in lines[2:] if line.strip()]
    assert [r[0] for r in rows] == ["0", "1", "2", "3", "4"]
    assert [r[1] for r in rows] == ["0.5", "0.6", "0.7", "0.8", "0.9"]
    # the printed table is exactly the library's table for the same graph
    slices = TimeSlices(g)
    assert "\n".join(lines[1:]).strip() == slice_table(slices, ConsumerTasks(slices)).strip()
    assert [int(r[2]) for r in rows] == [slices.num_users(k) for k in range(5)]


def test_stats_custom_times() -> None:
    res = CliRunner().invoke(
        app, ["data", "stats", "--dataset", "synthetic", *SYNTH_ARGS, "--times", "0.5,0.75,1.0"]
    )
    assert res.exit_code == 0, res.output
    rows = [line.split() for line in res.stdout.splitlines()[2:] if line.strip()]
    assert [r[:2] for r in rows] == [["0", "0.50"], ["1", "0.75"]]


def test_unknown_dataset_lists_valid_names() -> None:
    res = CliRunner().invoke(app, ["data", "stats", "--dataset", "nope"])
    assert res.exit_code != 0
    text = _text(res)
    assert "nope" in text
    names = DATASETS.names()
    assert {"ml-100k", "amazon", "synthetic"} <= set(names)
    for name in names:
        assert name in text
    assert "Traceback" not in text


def test_amazon_without_reviews_is_a_clear_error() -> None:
    res = CliRunner().invoke(app, ["data", "stats", "--dataset", "amazon"])
    assert res.exit_code != 0
    text = _text(res)
    assert "--reviews" in text and "amazon" in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--synthetic", "num_users"], "key=value"),
        (["--synthetic", "num_users=lots"], "lots"),
        (["--times", "0.6,0.5,1.0"], "time fractions"),
    ],
    ids=["no-equals", "not-a-number", "bad-times"],
)
def test_bad_options_fail_cleanly(args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["data", "stats", "--dataset", "synthetic", *SYNTH_ARGS, *args])
    assert res.exit_code != 0
    assert res.exception is None or isinstance(res.exception, SystemExit)
    text = _text(res)
    assert message in text and "Traceback" not in text
