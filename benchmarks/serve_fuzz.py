"""Hostile clients against ``bcemb serve``: fuzzed requests, slow clients, clients that never read.

1. ``--examples`` generated requests (:mod:`bcemb.serve._fuzz`: hostile values in every field,
   broken JSON, random bytes, any method/path/content type, bodies in pieces) straight to the
   ASGI app, then ``--server-examples`` of them over TCP to the real server; counts by status.
2. ``--slow`` connections that send a header line every 0.5 s and never finish their head
   (server run with ``--header-timeout 2``): how many the server closed, and /health meanwhile.
3. ``--non-readers`` connections that each ask for 10,000 ids (512 dims stored, version 0 at
   256) and never read: the server's RSS growth, /health meanwhile, connections dropped after
   ``--send-timeout 5``.

Last lines: ``fuzz_requests N``, ``fuzz_5xx N``, ``fuzz_hangs N``, ``slow_closed N``,
``nonreader_rss_growth_mib X``, ``health_during_attacks_ok N``.

    .venv/bin/python benchmarks/serve_fuzz.py
    .venv/bin/python benchmarks/serve_fuzz.py --examples 2000 --server-examples 300 --slow 50
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(port: int) -> float | None:
    """Seconds /health took, None when it failed."""
    t = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    return time.perf_counter() - t if data.startswith(b"HTTP/1.1 200") else None


def _fuzz(examples: int, send: Callable[[Any], object]) -> tuple[Counter, int]:
    """Send ``examples`` generated requests through ``send`` (which returns the outcome to
    count: a status, or why there is none) and count the outcomes; a timeout is a hang."""
    from hypothesis import HealthCheck, given, settings

    from bcemb.serve._fuzz import requests

    counts: Counter = Counter()
    hangs = 0

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(requests())
    def run(request) -> None:  # noqa: ANN001
        nonlocal hangs
        try:
            counts[send(request)] += 1
        except TimeoutError:
            hangs += 1

    run()
    return counts, hangs


def _fuzz_in_process(store: Path, examples: int) -> tuple[Counter, int]:
    from bcemb.serve import create_app
    from bcemb.serve._fuzz import call_app

    app = create_app(store, max_ids=50, max_body_bytes=4096, refresh_seconds=-1)
    loop = asyncio.new_event_loop()
    try:
        return _fuzz(examples, lambda request: loop.run_until_complete(call_app(app, request))[0])
    finally:
        loop.close()


def _fuzz_server(port: int, examples: int) -> tuple[Counter, int]:
    def send(request) -> object:  # noqa: ANN001
        head = f"{request.method} {request.path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".encode()
        for k, v in request.headers:
            head += k + b": " + v + b"\r\n"
        head += f"content-length: {len(request.body)}\r\n\r\n".encode()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(head)
                for piece in request.pieces:
                    s.sendall(piece)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except TimeoutError:
            raise
        except OSError:
            return "reset"
        return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else "closed"

    return _fuzz(examples, send)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--server-examples", type=int, default=2_000)
    parser.add_argument("--slow", type=int, default=500, help="slow-header connections")
    parser.add_argument("--non-readers", type=int, default=30)
    parser.add_argument("--users", type=int, default=20_000)
    args = parser.parse_args(argv)

    from bcemb.store import EmbeddingStore, publish
    from bcemb.store._testing import plain_graph, write_fake_run

    work = Path(tempfile.mkdtemp(prefix="bcemb-serve-fuzz-"))
    run = write_fake_run(work / "run", plain_graph(args.users, 2000), dims=(256, 512),
                         random_embeddings=True)  # fmt: skip
    publish(run, work / "store", check_model=False)
    users = [str(u) for u in EmbeddingStore(work / "store").ids("user")]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bcemb.serve", "--store", str(work / "store"), "--port", str(port),
         "--log-level", "warning", "--header-timeout", "2", "--send-timeout", "5"],
    )  # fmt: skip
    lines = {}
    health_ok = health_fail = 0
    try:
        deadline = time.monotonic() + 300
        while _health(port) is None:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.3)

        t = time.perf_counter()
        counts, hangs = _fuzz_in_process(work / "store", args.examples)
        print(f"in-process fuzz: {sum(counts.values())} requests in {time.perf_counter() - t:.0f} s, "
              f"by status {dict(sorted(counts.items()))}, hangs {hangs}")  # fmt: skip
        t = time.perf_counter()
        scounts, shangs = _fuzz_server(port, args.server_examples)
        print(f"real-server fuzz: {sum(scounts.values())} requests in {time.perf_counter() - t:.0f} s, "
              f"by status {dict(sorted(scounts.items(), key=str))}, hangs {shangs}")  # fmt: skip
        fives = sum(v for k, v in [*counts.items(), *scounts.items()] if isinstance(k, int) and k >= 500)
        lines["fuzz_requests"] = sum(counts.values()) + sum(scounts.values())
        lines["fuzz_5xx"] = fives
        lines["fuzz_hangs"] = hangs + shangs

        # slow headers
        socks = []
        for _ in range(args.slow):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /embeddings HTTP/1.1\r\nhost: x\r\n")
            s.setblocking(False)
            socks.append(s)
        closed: set[int] = set()
        worst = 0.0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8 and len(closed) < len(socks):
            for n, s in enumerate(socks):
                if n in closed:
                    continue
                try:
                    s.send(b"x-slow: 1\r\n")
                    if s.recv(1) == b"":
                        closed.add(n)
                except BlockingIOError:
                    pass
                except OSError:
                    closed.add(n)
            h = _health(port)
            health_ok += h is not None
            health_fail += h is None
            worst = max(worst, h or 0.0)
            time.sleep(0.5)
        for s in socks:
            s.close()
        print(f"slow headers: {len(closed)} of {len(socks)} connections closed by the server within "
              f"{time.monotonic() - t0:.1f} s (header timeout 2 s); /health slowest {worst * 1000:.0f} ms")  # fmt: skip
        lines["slow_closed"] = len(closed)
        lines["slow_connections"] = len(socks)

        # clients that never read
        import psutil

        body = orjson.dumps({"ids": (users * (10_000 // len(users) + 1))[:10_000], "version": 0})
        request = (b"POST /embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                   + f"content-length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
        rss0 = psutil.Process(server.pid).memory_info().rss
        socks = []
        for _ in range(args.non_readers):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(request)
            socks.append(s)
        peak = rss0
        t0 = time.monotonic()
        worst = 0.0
        while time.monotonic() - t0 < 10:
            peak = max(peak, psutil.Process(server.pid).memory_info().rss)
            h = _health(port)
            health_ok += h is not None
            health_fail += h is None
            worst = max(worst, h or 0.0)
            time.sleep(0.5)
        dropped = 0
        for s in socks:
            s.setblocking(False)
            try:  # after the send timeout the server has closed: drain what it sent, then EOF
                while True:
                    if s.recv(1 << 20) == b"":
                        dropped += 1
                        break
            except BlockingIOError:
                pass
            s.close()
        growth = (peak - rss0) / 2**20
        print(f"non-readers: {args.non_readers} x 10,000 ids (JSON, 256 dims) never read: server RSS "
              f"{rss0 / 2**20:.0f} -> peak {peak / 2**20:.0f} MiB (+{growth:.0f} MiB); {dropped} dropped "
              f"by the server after the 5 s send timeout; /health slowest {worst * 1000:.0f} ms")  # fmt: skip
        lines["nonreader_rss_growth_mib"] = round(growth, 1)
        lines["nonreaders_dropped"] = dropped
        lines["health_during_attacks_ok"] = health_ok
        lines["health_during_attacks_failed"] = health_fail
        for name, value in lines.items():
            print(f"{name} {value}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
