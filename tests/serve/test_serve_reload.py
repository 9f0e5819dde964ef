"""Hot reload (issue 12 point 4) and reload failures (issue 13 point 7)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("orjson")
from starlette.testclient import TestClient

from bcemb.serve import create_app
from bcemb.serve.reload import StoreWatcher
from bcemb.store import EmbeddingStore, publish
from bcemb.store._testing import write_fake_run


def _two_step_store(tmp_path: Path) -> tuple[Path, Path]:
    run = write_fake_run(tmp_path / "run", dims=(8, 12, 16), upto=1, seed=4)
    publish(run, tmp_path / "store")
    write_fake_run(tmp_path / "run", dims=(8, 12, 16), seed=4)
    return run, tmp_path / "store"


def _latest(client: TestClient) -> int:
    r = client.post("/embeddings", json={"ids": [], "encoding": "binary"})
    assert r.status_code == 200
    return int(r.headers["x-bcemb-latest"])


def test_requests_never_wait_for_a_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, root = _two_step_store(tmp_path)
    opening, release = threading.Event(), threading.Event()
    real_reload = EmbeddingStore.reload

    def slow_reload(self: EmbeddingStore) -> EmbeddingStore:
        opening.set()
        assert release.wait(60)
        return real_reload(self)

    monkeypatch.setattr(EmbeddingStore, "reload", slow_reload)
    app = create_app(root, refresh_seconds=0.02)
    with TestClient(app) as client:  # the lifespan starts the watcher thread
        assert _latest(client) == 1
        publish(run, root)
        assert opening.wait(30), "the watcher did not notice the publish"
        # The reload is in progress (blocked): requests are answered from the old snapshot.
        for _ in range(20):
            assert _latest(client) == 1
            assert client.get("/health").json()["status"] == "ok"
        release.set()
        deadline = time.monotonic() + 30
        while _latest(client) != 2:
            assert time.monotonic() < deadline, "the new version was never served"
            time.sleep(0.01)
        assert client.get("/versions").json()["latest"] == 2
    assert app.watcher._thread is None  # the lifespan stopped it


def test_a_reload_failure_shows_in_health_not_as_500s(tmp_path: Path) -> None:
    run, root = _two_step_store(tmp_path)
    app = create_app(root, refresh_seconds=-1)
    client = TestClient(app)
    ids = [str(i) for i in app.store.ids("user")[:3]]
    publish(run, root)
    # The new state cannot be opened: a flipped byte in its newest transform.
    fresh = EmbeddingStore(root, verify=False)
    path = root / fresh.manifest.versions[2].files["transform"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not app.watcher.poll()
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert "transform" in health.json()["detail"] and health.json()["latest"] == 1
    for _ in range(5):  # the old snapshot is still served: no 500 loop
        r = client.post("/embeddings", json={"ids": ids, "version": 0})
        assert r.status_code == 200 and r.json()["latest"] == 1
    data[-1] ^= 0xFF  # repaired: the next look swaps in the new state and health is ok again
    path.write_bytes(bytes(data))
    assert app.watcher.poll()
    assert client.get("/health").json() == {
        "status": "ok",
        "latest": 2,
        "manifest": app.store.manifest.name,
    }


def test_watcher_retries_with_growing_delay_and_stops(tmp_path: Path) -> None:
    _, root = _two_step_store(tmp_path)
    watcher = StoreWatcher(root, interval=0.01)
    calls = []
    watcher.poll = lambda: calls.append(time.monotonic()) or False  # type: ignore[method-assign]
    watcher.error = "broken"
    watcher.start()
    time.sleep(0.5)
    watcher.stop()
    n = len(calls)
    assert 2 <= n <= 8  # 0.01, 0.02, 0.04, ... not 50 tries
    time.sleep(0.1)
    assert len(calls) == n
