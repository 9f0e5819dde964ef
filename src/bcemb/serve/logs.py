"""Logging of the server: repeated lines are rate-limited so that a fault cannot flood the log.

At the open-file limit every accept fails and asyncio logs each failure; a broken store
state is reported by every reload attempt. :class:`RepeatFilter` lets through a few
records of each message template per period and counts the rest, reporting the count on
the next line let through.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

__all__ = ["RepeatFilter", "log_config"]


class RepeatFilter(logging.Filter):
    """At most ``burst`` records per (logger, level, message template) per ``period`` seconds.

    Args:
        burst: Records let through per period.
        period: Seconds.
        max_keys: Templates tracked at once (the table is cleared beyond).
    """

    def __init__(self, burst: int = 5, period: float = 60.0, max_keys: int = 1000) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self.max_keys = max_keys
        self._seen: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.period:
            if len(self._seen) >= self.max_keys:
                self._seen.clear()
            suppressed = int(state[2]) if state is not None else 0
            self._seen[key] = state = [now, 0.0, 0.0]
            if suppressed:
                record.msg = f"{record.msg} [{suppressed} more like this suppressed]"
        state[1] += 1
        if state[1] > self.burst:
            state[2] += 1
            return False
        return True


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's logging config with :class:`RepeatFilter` on the error log, asyncio and bcemb.

    Access lines (one per request) are not rate-limited: they are off unless asked for.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"repeats": {"()": RepeatFilter}}
    config["handlers"]["default"]["filters"] = ["repeats"]
    for name in ("asyncio", "bcemb"):
        config["loggers"][name] = {
            "handlers": ["default"],
            "level": level.upper(),
            "propagate": False,
        }
    return config
