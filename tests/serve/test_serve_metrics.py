"""The request counts of ServiceMetrics, as Prometheus reads them."""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bcemb.serve.metrics import ServiceMetrics  # noqa: E402


def _samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counts_buckets_and_vectors() -> None:
    m = ServiceMetrics()
    for seconds in (0.0005, 0.001, 0.003, 20.0):  # 0.001 is its own bucket's bound: le
        m.observe("/embeddings", 0, 200, seconds, 5)
    m.observe("/embeddings", None, 404, 0.02)
    s = _samples(m)
    ok = (("route", "/embeddings"), ("status", "200"), ("version", "0"))
    assert s[("bcemb_requests_total", ok)] == 4
    assert s[("bcemb_request_duration_seconds_count", ok)] == 4
    assert s[("bcemb_request_duration_seconds_sum", ok)] == pytest.approx(20.0045)
    bucket = lambda le: s[("bcemb_request_duration_seconds_bucket", tuple(sorted((*ok, ("le", le)))))]  # noqa: E731
    assert (bucket("0.001"), bucket("0.005"), bucket("10.0"), bucket("+Inf")) == (2, 3, 3, 4)
    assert s[("bcemb_vectors_served_total", (("version", "0"),))] == 20
    assert ("bcemb_vectors_served_total", (("version", "latest"),)) not in s  # a 404 serves none
    failed = (("route", "/embeddings"), ("status", "404"), ("version", "latest"))
    assert s[("bcemb_requests_total", failed)] == 1
