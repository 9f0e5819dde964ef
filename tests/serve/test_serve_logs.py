"""Repeated log lines are rate-limited (issue 13 point 3: the log flooded at 3.6 MB/s)."""

from __future__ import annotations

import logging

import pytest

from bcemb.serve.logs import RepeatFilter, log_config


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_pass_a_few_times_per_period_then_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("bcemb.serve.logs.time.monotonic", lambda: now[0])
    f = RepeatFilter(burst=3, period=60)
    passed = [f.filter(_record("socket.accept() out of system resource: %s", n)) for n in range(1000)]
    assert sum(passed) == 3 and passed[:3] == [True] * 3
    assert f.filter(_record("another message"))  # other templates are independent
    now[0] += 61
    again = _record("socket.accept() out of system resource: %s", 0)
    assert f.filter(again) and "997 more like this suppressed" in again.getMessage()


def test_log_config_filters_the_error_log_asyncio_and_bcemb() -> None:
    pytest.importorskip("uvicorn")
    config = log_config("warning")
    assert config["handlers"]["default"]["filters"] == ["repeats"]
    assert config["loggers"]["asyncio"]["handlers"] == ["default"]
    assert config["loggers"]["bcemb"]["level"] == "WARNING"
