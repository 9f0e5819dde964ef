"""The space of served vectors (body field, X-Embedding-Space, expect_space -> 409) and GET /metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
from starlette.testclient import TestClient

from bcemb.serve import create_app
from bcemb.store import EmbeddingStore


@pytest.fixture()
def client(store_dir: Path) -> TestClient:
    return TestClient(create_app(store_dir, max_ids=50, max_body_bytes=4096))


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        got = head[len(name):].strip("{}")
        if ",".join(sorted(got.split(","))) == want:
            return float(value)
    raise AssertionError(f"no {name}{{{want}}} in\n{text}")


def test_space_in_body_and_header_and_409(client: TestClient, store_dir: Path) -> None:
    s = EmbeddingStore(store_dir)
    ids = [str(i) for i in s.ids("user")[:3]]
    for version, encoding in ((0, "json"), (1, "base64"), (None, "json")):
        r = client.post("/embeddings", json={"ids": ids, "version": version, "encoding": encoding})
        assert r.status_code == 200
        assert r.headers["x-embedding-space"] == s.space(version) == r.json()["space"]
    r = client.post("/embeddings", json={"ids": ids, "version": 0, "expect_space": s.space(0)})
    assert r.status_code == 200
    r = client.post("/embeddings", json={"ids": ids, "version": 0, "expect_space": s.space(1)})
    assert r.status_code == 409
    assert r.json()["space"] == s.space(0) and "refetch" in r.json()["detail"]
    r = client.post("/embeddings", json={"ids": ids, "expect_space": 3})
    assert r.status_code == 422 and "expect_space" in r.json()["detail"]


def test_metrics_counts_latency_vectors_versions_and_probe_errors(client: TestClient, store_dir: Path) -> None:
    s = EmbeddingStore(store_dir)
    ids = [str(i) for i in s.ids("user")[:4]]
    client.post("/embeddings", json={"ids": ids, "version": 0})
    client.post("/embeddings", json={"ids": ids, "version": 0})
    client.post("/embeddings", json={"ids": ["nope"], "version": 1})
    client.post("/embeddings", json={"ids": ids, "version": 0, "expect_space": "v0-" + "0" * 16})
    client.get("/health")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert _metric(text, "bcemb_requests_total", route="/embeddings", version="0", status="200") == 2
    assert _metric(text, "bcemb_requests_total", route="/embeddings", version="1", status="404") == 1
    assert _metric(text, "bcemb_requests_total", route="/embeddings", version="0", status="409") == 1
    assert _metric(text, "bcemb_requests_total", route="/health", version="none", status="200") == 1
    assert _metric(
        text, "bcemb_request_duration_seconds_count", route="/embeddings", version="0", status="200"
    ) == 2
    assert _metric(text, "bcemb_vectors_served_total", version="0") == 8
    assert _metric(text, "bcemb_store_latest_version") == s.latest == 2
    report = s.check()
    for v in report.versions:
        served = _metric(text, "bcemb_chain_probe_error", version=str(v.version))
        assert served == pytest.approx(v.mean_error, rel=1e-5, abs=1e-6)
    assert _metric(text, "bcemb_chain_probe_error", version="2") == pytest.approx(0.0, abs=1e-5)
