"""The real server: ``python -m bcemb.serve`` (as ``bcemb serve``) on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from bcemb.store import EmbeddingStore


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_server_answers_on_loopback(store_dir: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bcemb.serve",
            "--store",
            str(store_dir),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # importing torch on a busy machine takes a while
        while True:
            assert proc.poll() is None, (
                f"the server exited: {proc.stdout.read() if proc.stdout else ''}"
            )
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.25)
        store = EmbeddingStore(store_dir)
        ids = [str(i) for i in store.ids("user")[:3]]
        r = httpx.post(
            f"{base}/embeddings", json={"ids": ids, "version": 0, "kind": "user"}, timeout=10
        )
        assert r.status_code == 200
        body = r.json()
        assert body["version"] == 0 and body["ids"] == ids
        np.testing.assert_array_equal(
            np.array(body["vectors"], dtype=np.float32), store.get(ids, version=0)
        )
        assert httpx.get(f"{base}/versions", timeout=10).json()["latest"] == 2
        r = httpx.post(f"{base}/embeddings", json={"ids": ["ghost"], "version": 0}, timeout=10)
        assert r.status_code == 404 and "ghost" in r.json()["detail"]
        r = httpx.post(f"{base}/embeddings", json={"ids": "ghost"}, timeout=10)
        assert r.status_code == 422
        if sys.platform.startswith("linux"):
            # bound to 127.0.0.1 only, not to every interface: 127.0.0.2 (also this host) is refused
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                assert s.connect_ex(("127.0.0.2", port)) != 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
