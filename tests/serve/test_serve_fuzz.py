"""Property-based test of the HTTP API (issue 12 point 5, issue 13 point 4): no 5xx, no hang.

Thousands of generated requests (hostile values in every field, broken JSON, random bytes,
any method, path and content type, bodies in random pieces) go straight to the ASGI app;
each must be answered, within 10 s, with a status below 500 and a JSON ``detail`` for errors.
A larger run against the real server: ``benchmarks/serve_fuzz.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import orjson
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings

from bcemb.serve import create_app
from bcemb.serve._fuzz import FuzzRequest, call_app, requests


@pytest.mark.parametrize(
    "examples", [pytest.param(2000, id="2000"), pytest.param(20_000, id="20000", marks=pytest.mark.slow)]
)
def test_generated_requests_never_get_5xx_or_hang(store_dir: Path, examples: int) -> None:
    app = create_app(store_dir, max_ids=50, max_body_bytes=4096, refresh_seconds=-1)
    loop = asyncio.new_event_loop()
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests())
    def check(request: FuzzRequest) -> None:
        status, body = loop.run_until_complete(call_app(app, request))
        statuses[status] += 1
        assert status < 500, (request, status, body[:300])
        if status >= 400 and request.method != "HEAD":
            assert orjson.loads(body)["detail"]

    try:
        check()
    finally:
        loop.close()
    assert sum(statuses.values()) >= examples
    assert statuses[200] and statuses[422] and statuses[404]  # the strategies reach the API
