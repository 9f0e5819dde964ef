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


# -- issue 12 defect: one-line errors before anything is printed -------------------------------


def _serve_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bcemb", "serve", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_port_out_of_range_is_a_one_line_error(store_dir: Path) -> None:
    r = _serve_cli("--store", str(store_dir), "--port", "99999")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "serving" not in r.stderr
    assert r.stderr.strip().splitlines() == ["error: --port must be between 0 and 65535, got 99999"]


def test_busy_port_is_a_one_line_error_and_nothing_claims_to_serve(store_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _serve_cli("--store", str(store_dir), "--port", str(port))
    assert r.returncode == 1 and "Traceback" not in r.stderr and "serving" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}")


# -- issue 13 point 3: slow clients, non-reading clients ---------------------------------------


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory):
    """A server over 2,000 users at 512 dims (version 0: 128), with short deadlines."""
    from bcemb.store import publish
    from bcemb.store._testing import plain_graph, write_fake_run

    root = tmp_path_factory.mktemp("big")
    run = write_fake_run(root / "run", plain_graph(2000, 500), dims=(128, 512), random_embeddings=True)
    publish(run, root / "store", check_model=False)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcemb.serve", "--store", str(root / "store"), "--port", str(port),
         "--log-level", "warning", "--header-timeout", "1", "--body-timeout", "1",
         "--send-timeout", "4", "--max-body-bytes", str(1 << 20)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"the server exited: {proc.stdout.read() if proc.stdout else ''}"
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.25)
    yield proc, port, root / "store"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _health_ok(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


def test_slow_headers_are_cut_off_and_the_server_keeps_answering(big_server) -> None:
    _, port, _ = big_server
    socks = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /embeddings HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    t0 = time.monotonic()
    closed = set()
    while len(closed) < len(socks) and time.monotonic() - t0 < 15:
        for n, s in enumerate(socks):  # a header line every 0.2 s: never a complete head
            if n in closed:
                continue
            try:
                s.sendall(b"X-Slow: 1\r\n")
                s.settimeout(0.001)
                if s.recv(1) == b"":
                    closed.add(n)
            except TimeoutError:
                pass
            except OSError:
                closed.add(n)
        assert _health_ok(port)
        time.sleep(0.2)
    for s in socks:
        s.close()
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} slow connections still open"


def test_a_slow_body_gets_408(big_server) -> None:
    _, port, _ = big_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /embeddings HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n{\"ids\": ["
        )
        answer = b""
        while chunk := s.recv(4096):  # the server closes the connection after the answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"not received within 1 s" in answer


def test_clients_that_never_read_keep_memory_bounded(big_server) -> None:
    import psutil

    proc, port, root = big_server
    from bcemb.store import EmbeddingStore

    users = [str(u) for u in EmbeddingStore(root).ids("user")]
    body = orjson_dumps({"ids": (users * 5)[:10_000], "version": 0})
    request = (
        b"POST /embeddings HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    r = httpx.post(f"http://127.0.0.1:{port}/embeddings", content=body, timeout=60)
    assert r.status_code == 200 and len(r.json()["vectors"]) == 10_000  # warm, and complete
    rss0 = psutil.Process(proc.pid).memory_info().rss
    socks = []
    for _ in range(20):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        socks.append(s)
    time.sleep(2)
    assert _health_ok(port)
    rss1 = psutil.Process(proc.pid).memory_info().rss
    for s in socks:
        s.close()
    # Unbounded buffering held each whole answer: ~12 MB of JSON + 20 MB of vectors per client.
    assert rss1 - rss0 < 100 << 20, f"RSS grew by {(rss1 - rss0) >> 20} MiB for 20 non-readers"
    assert _health_ok(port)


def orjson_dumps(data: object) -> bytes:
    import orjson

    return orjson.dumps(data)


def test_real_server_answers_on_loopback(big_server) -> None:
    _, port, store_dir = big_server
    base = f"http://127.0.0.1:{port}"
    store = EmbeddingStore(store_dir)
    store.materialize()  # the server keeps the same views (bcemb serve --materialize auto)
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
    assert httpx.get(f"{base}/versions", timeout=10).json()["latest"] == 1
    r = httpx.post(f"{base}/embeddings", json={"ids": ["ghost"], "version": 0}, timeout=10)
    assert r.status_code == 404 and "ghost" in r.json()["detail"]
    r = httpx.post(f"{base}/embeddings", json={"ids": "ghost"}, timeout=10)
    assert r.status_code == 422
    if sys.platform.startswith("linux"):
        # bound to 127.0.0.1 only, not to every interface: 127.0.0.2 (also this host) is refused
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            assert s.connect_ex(("127.0.0.2", port)) != 0
