"""Latency and load of ``bcemb serve`` (the real HTTP server) next to the framework floor.

Builds a store from a fake run (random embeddings at the paper's sizes, no training) and
starts two servers on loopback with the same stack (uvicorn, h11, the same protocol and
limits, see :func:`bcemb.serve.server.run`):

- ours: ``python -m bcemb.serve --store ...``;
- the floor: a bare ASGI app that reads the request body and answers precomputed bytes: the
  very bytes and headers our server gave for a request of the same size (so the same answer
  size).

Then, from one client process (raw asyncio HTTP/1.1 with keep-alive, so that the client costs
little next to the server):

1. p50/p99 of 1-id and 100-id requests (version 0: one product; JSON, and binary) from
   ``--concurrency`` clients at once, ours and the floor in 10 alternating rounds (16,000
   requests per server and cell); ratio of p99s,
   and each server's CPU time per request (``server_cpu_ratio_*``: ours / the floor's).
2. 10,000-id requests one at a time in each encoding, next to the same ``EmbeddingStore.get``
   in-process (one BLAS thread, like the server); ratio of the binary p50 to ``get``'s.
3. Sustained load: 1-id requests from ``--concurrency`` clients for ``--load-seconds``;
   requests/s, errors, and the growth of the server's RSS.
4. Hot reload: a publish (from another process) while a client keeps asking; seconds until the
   new version is served, the slowest request until then, and the slowest in the
   ``--reload-watch`` seconds after (while the server builds the new snapshot's views, JSON
   texts and id tables).

The machine's load average is printed: on a shared machine every figure moves with it; the
ratios compare runs made in the same minutes. Last lines (``name value``)::

    p99_ratio_1id X
    p99_ratio_100ids X
    binary_10k_ratio X
    load_rps X
    load_errors N

    .venv/bin/python benchmarks/serve_latency.py                 # 100k users, 50k items, 60 s load
    .venv/bin/python benchmarks/serve_latency.py --fast          # a small smoke run (~1 min)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

# ----------------------------------------------------------------------------- the floor


class FloorApp:
    """A bare ASGI app: read the body, answer the precomputed bytes of ``path``."""

    def __init__(self, bodies: dict[str, tuple[bytes, list[tuple[bytes, bytes]]]]) -> None:
        self.bodies = bodies

    async def __call__(self, scope: dict, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        body, headers = self.bodies.get(scope["path"], (b"health", []))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _floor_server(port: int, folder: Path) -> None:
    from bcemb.serve.server import bind, run

    bodies = {}
    for path in folder.glob("*.body"):
        meta = orjson.loads((folder / f"{path.stem}.json").read_bytes())
        bodies[f"/{path.stem}"] = (path.read_bytes(), [(k.encode(), v.encode()) for k, v in meta])
    run(FloorApp(bodies), bind("127.0.0.1", port), log_level="warning")


# ----------------------------------------------------------------------------- the client


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def _parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    """Status and lower-cased headers of an HTTP/1.1 answer's head."""
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
    return int(lines[0][9:12]), headers


class Connection:
    """One keep-alive HTTP/1.1 connection (content-length and chunked answers)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        # A 64 MiB buffer: a 10 MB answer is read without pausing the socket every 2 MB.
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 26)
        return cls(reader, writer)

    async def call(self, raw: bytes) -> Reply:
        self.writer.write(raw)
        status, headers = _parse_head(await self.reader.readuntil(b"\r\n\r\n"))
        if b"content-length" in headers:
            body = await self.reader.readexactly(int(headers[b"content-length"]))
        else:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        return Reply(status, headers, body)

    def close(self) -> None:
        self.writer.close()


class BlockingConnection:
    """A keep-alive connection that reads a content-length answer straight into one buffer.

    For the large binary answers: a client that copies 10 MB three times on its way in (the
    stream reader's buffer, then the read out of it) measures itself rather than the service.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, raw: bytes) -> Reply:
        self.sock.sendall(raw)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            got += chunk
        head, _, rest = got.partition(b"\r\n\r\n")
        status, headers = _parse_head(head)
        body = bytearray(int(headers[b"content-length"]))
        view = memoryview(body)
        view[: len(rest)] = rest
        done = len(rest)
        while done < len(body):
            n = self.sock.recv_into(view[done:])
            if not n:
                raise ConnectionError("the server closed the connection")
            done += n
        return Reply(status, headers, body)  # type: ignore[arg-type]

    def close(self) -> None:
        self.sock.close()


def _post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _concurrent(port: int, requests: list[list[bytes]]) -> tuple[list[float], int]:
    """Each client sends its list of requests in turn; latencies (s) and error count."""
    latencies: list[float] = []
    errors = 0

    async def client(raws: list[bytes]) -> None:
        nonlocal errors
        conn = await Connection.open(port)
        try:
            for raw in raws:
                t = time.perf_counter()
                reply = await conn.call(raw)
                latencies.append(time.perf_counter() - t)
                errors += reply.status != 200
        finally:
            conn.close()

    await asyncio.gather(*(client(r) for r in requests))
    return latencies, errors


async def _load(port: int, make: callable, clients: int, seconds: float) -> tuple[int, int, float]:  # type: ignore[valid-type]
    """Requests from ``clients`` connections for ``seconds``: (ok, errors, elapsed)."""
    ok = errors = 0
    stop = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal ok, errors
        conn = None
        i = 0
        while time.perf_counter() < stop:
            try:
                if conn is None:
                    conn = await Connection.open(port)
                reply = await conn.call(make(n, i))
                if reply.status == 200:
                    ok += 1
                else:
                    errors += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                if conn is not None:
                    conn.close()
                conn = None
            i += 1
        if conn is not None:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return ok, errors, time.perf_counter() - t0


# ----------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000, q))


def _wait_up(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 300
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.2)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--dims", default="256,320,384,448,512", help="D_0..D_K")
    parser.add_argument("--concurrency", type=int, default=16, help="clients at once")
    parser.add_argument("--requests", type=int, default=100, help="requests per client per round")
    parser.add_argument(
        "--rounds", type=int, default=10,
        help="alternating ours/floor rounds (each: --concurrency x --requests requests)",
    )
    parser.add_argument("--large", type=int, default=10_000, help="ids of the large requests")
    parser.add_argument("--large-repeats", type=int, default=15)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument(
        "--reload-watch", type=float, default=10.0,
        help="seconds to keep asking after the new version is served (its background work)",
    )
    parser.add_argument(
        "--materialize", default="auto",
        help="the server's --materialize (auto, all, none, 0,1); the in-process get uses the same",
    )
    parser.add_argument(
        "--json-cache-mb", type=float, default=1024.0,
        help="the server's --json-cache-mb (0: every JSON answer formatted anew)",
    )
    parser.add_argument("--fast", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--floor-server", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_server is not None:
        _floor_server(args.port, args.floor_server)
        return
    if args.fast:
        args.users, args.items, args.dims = 3000, 1000, "64,96,128"
        args.requests, args.rounds, args.large, args.large_repeats = 20, 1, 2000, 3
        args.load_seconds = min(args.load_seconds, 3.0)
        args.reload_watch = min(args.reload_watch, 2.0)
    logging.basicConfig(level=logging.WARNING)

    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # like the server (bcemb serve --blas-threads 1)

    from bcemb.store import EmbeddingStore, publish
    from bcemb.store._testing import plain_graph, write_fake_run

    dims = [int(d) for d in args.dims.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bcemb-serve-bench-"))
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    graph = plain_graph(args.users, args.items)
    run = write_fake_run(work / "run", graph, dims=dims, upto=len(dims) - 2, random_embeddings=True)
    publish(run, work / "store", check_model=False)
    store = EmbeddingStore(work / "store")
    from bcemb.serve.views import ViewPolicy

    # As the server will (the JSON texts only matter to the server's answers).
    policy = ViewPolicy.parse(args.materialize, json_mb=0)
    views = policy.apply(store)
    # The library's get looks ids up in dicts unless told to build the compiled id tables
    # (which the server builds): the 10,000-id comparison is made with both.
    indexed = EmbeddingStore(work / "store")
    policy.apply(indexed)
    has_tables = indexed.index_ids()
    print(f"store: {store!r}, built in {time.perf_counter() - t0:.1f} s at {work}")
    print(f"materialized versions (server and in-process get): {views or 'none'}")
    print(f"machine: {os.cpu_count()} cpus, load average {load0:.1f} at the start")

    ours_port, floor_port = _free_port(), _free_port()
    ours = subprocess.Popen(
        [sys.executable, "-m", "bcemb.serve", "--store", str(work / "store"),
         "--port", str(ours_port), "--log-level", "warning", "--max-body-bytes", str(16 << 20),
         "--refresh-seconds", "0.1", "--materialize", args.materialize,
         "--json-cache-mb", str(args.json_cache_mb)],
    )  # fmt: skip
    floor_dir = work / "floor"
    floor_dir.mkdir(exist_ok=True)
    floor = None
    rng = np.random.default_rng(0)
    users = store.ids("user")

    def body(n: int, encoding: str = "json", version: int | None = 0) -> bytes:
        ids = [str(i) for i in rng.choice(users, size=n, replace=n > len(users))]
        return orjson.dumps({"ids": ids, "version": version, "encoding": encoding})

    lines: dict[str, float] = {}
    try:
        _wait_up(ours_port, ours, "bcemb serve")
        # The floor answers the bytes our server gave for one request of each size.
        cells = [(1, "json"), (100, "json"), (1, "binary"), (100, "binary")]

        async def capture() -> None:
            conn = await Connection.open(ours_port)
            for n, encoding in cells:
                reply = await conn.call(_post("/embeddings", body(n, encoding)))
                assert reply.status == 200, reply.body[:200]
                name = f"n{n}-{encoding}"
                (floor_dir / f"{name}.body").write_bytes(reply.body)
                # Every header ours sent (the floor adds its own content-length): the same
                # bytes on the wire, headers included.
                keep = [
                    (k.decode(), v.decode())
                    for k, v in reply.headers.items()
                    if k not in (b"content-length", b"transfer-encoding", b"connection")
                ]
                (floor_dir / f"{name}.json").write_bytes(orjson.dumps(keep))
            conn.close()

        asyncio.run(capture())
        floor = subprocess.Popen(
            [sys.executable, __file__, "--floor-server", str(floor_dir), "--port", str(floor_port)]
        )
        _wait_up(floor_port, floor, "the floor server")
        print(
            f"servers: uvicorn (h11, 1 process, 1 BLAS thread); client: {args.concurrency} "
            "asyncio keep-alive connections in one process"
        )

        # 1. concurrent latency, ours and the floor in alternating rounds
        # The server's CPU seconds per request tell where a ratio comes from: with the servers
        # saturated by the clients, the p50 ratio follows the ratio of per-request CPU (the p99
        # ratio moves with either server's tail as well).
        print(
            f"\n{'cell':<16} {'ours p50':>9} {'p99':>8} | {'floor p50':>9} {'p99':>8} | {'p99 ratio':>9} "
            f"{'bytes':>8} | {'server CPU us/req: ours':>23} {'floor':>6}"
        )
        for n, encoding in cells:
            name = f"n{n}-{encoding}"
            mine: list[float] = []
            base: list[float] = []
            cpu = {"ours": 0.0, "floor": 0.0}
            errors = 0
            for _ in range(args.rounds):
                reqs = [[_post("/embeddings", body(n, encoding)) for _ in range(args.requests)]
                        for _ in range(args.concurrency)]  # fmt: skip
                floor_reqs = [[_post(f"/{name}", _body_of(r)) for r in c] for c in reqs]
                for who, port, pid, raws, into in (
                    ("ours", ours_port, ours.pid, reqs, mine),
                    ("floor", floor_port, floor.pid, floor_reqs, base),
                ):
                    before = _cpu_seconds(pid)
                    lat, err = asyncio.run(_concurrent(port, raws))
                    cpu[who] += _cpu_seconds(pid) - before
                    into += lat[args.concurrency :]  # the first request of each client opens it
                    errors += err
            ratio = _ms(mine, 99) / _ms(base, 99)
            size = (floor_dir / f"{name}.body").stat().st_size
            per_request = {k: 1e6 * v / (args.rounds * args.concurrency * args.requests) for k, v in cpu.items()}
            print(
                f"{name:<16} {_ms(mine, 50):>7.2f}ms {_ms(mine, 99):>6.2f}ms | {_ms(base, 50):>7.2f}ms "
                f"{_ms(base, 99):>6.2f}ms | {ratio:>8.2f}x {size:>8} | {per_request['ours']:>23.0f} "
                f"{per_request['floor']:>6.0f}" + (f"  errors {errors}" if errors else "")
            )
            cell = f"{n}{'id' if n == 1 else 'ids'}_{encoding}"
            lines[f"p99_ratio_{cell}"] = ratio
            # (CPU time is counted in clock ticks: a --fast run may see none for the floor.)
            lines[f"server_cpu_ratio_{cell}"] = (
                per_request["ours"] / per_request["floor"] if per_request["floor"] else float("nan")
            )

        # 2. large requests one at a time, next to the in-process get
        print(f"\n{args.large} ids, one request at a time (version 0: {dims[0]} dims from {store.dim()}):")
        get_times: list[float] = []
        indexed_times: list[float] = []
        http: dict[str, list[float]] = {"json": [], "base64": [], "binary": []}

        async def large() -> None:
            conn = await Connection.open(ours_port)
            blocking = BlockingConnection(ours_port)  # binary answers have a content-length
            for r in range(args.large_repeats + 2):
                ids = [str(i) for i in rng.choice(users, size=args.large, replace=args.large > len(users))]
                pairs = [(store, get_times), (indexed, indexed_times)]
                for source, times in pairs if r % 2 else pairs[::-1]:  # each first in turn
                    t = time.perf_counter()
                    want = source.get(ids, version=0)
                    if r >= 2:
                        times.append(time.perf_counter() - t)
                for encoding in http:
                    raw = _post("/embeddings", orjson.dumps({"ids": ids, "version": 0, "encoding": encoding}))
                    t = time.perf_counter()
                    reply = blocking.call(raw) if encoding == "binary" else await conn.call(raw)
                    dt = time.perf_counter() - t
                    assert reply.status == 200, reply.body[:200]
                    if encoding == "binary":
                        got = np.frombuffer(reply.body, dtype="<f4").reshape(want.shape)
                        assert np.array_equal(got, np.asarray(want)), "binary answer differs from get"
                    if r >= 2:
                        http[encoding].append(dt)
            conn.close()
            blocking.close()

        asyncio.run(large())
        g50, i50 = _ms(get_times, 50), _ms(indexed_times, 50)
        print(f"  in-process get  p50 {g50:8.1f} ms  p99 {_ms(get_times, 99):8.1f} ms  (ids looked up in dicts, the library's default)")
        if has_tables:
            print(f"  the same, with the id tables  p50 {i50:8.1f} ms  p99 {_ms(indexed_times, 99):8.1f} ms  (EmbeddingStore.index_ids(), as the server)")
        for encoding, samples in http.items():
            print(
                f"  HTTP {encoding:<10} p50 {_ms(samples, 50):8.1f} ms  p99 {_ms(samples, 99):8.1f} ms"
                f"  ({_ms(samples, 50) / g50:.2f}x get)"
            )
        binary_ratio = _ms(http["binary"], 50) / g50
        if has_tables:
            lines["binary_10k_ratio_vs_indexed_get"] = _ms(http["binary"], 50) / i50

        # 3. sustained load of 1-id requests
        load_bodies = [_post("/embeddings", body(1)) for _ in range(4096)]
        asyncio.run(_load(ours_port, lambda n, i: load_bodies[(n * 997 + i) % 4096], args.concurrency, 1.0))
        rss0 = _rss(ours.pid)
        ok, errors, elapsed = asyncio.run(
            _load(ours_port, lambda n, i: load_bodies[(n * 997 + i) % 4096], args.concurrency, args.load_seconds)
        )
        rss1 = _rss(ours.pid)
        rps = ok / elapsed
        growth = rss1 / rss0 - 1
        print(
            f"\nload: {args.concurrency} clients, 1-id requests, {elapsed:.0f} s: {ok} answered "
            f"({rps:.0f}/s), {errors} errors; server RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB "
            f"({100 * growth:+.1f}%)"
        )

        # 4. hot reload while a client keeps asking
        write_fake_run(work / "run", graph, dims=dims, random_embeddings=True)

        pointer = work / "store" / "CURRENT"

        async def reload_run() -> tuple[float, float, float]:
            conn = await Connection.open(ours_port)
            raw = _post("/embeddings", body(1, "binary", None))
            before = pointer.read_bytes()
            slowest = {"swap": 0.0, "after": 0.0}
            switched, seen = None, None
            # The publisher is a process of its own, as an embedding team's job would be: in
            # this one, its GIL would also stall the client's event loop, counted as the server's.
            publisher = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _PUBLISH, str(run), str(work / "store")
            )
            # Until the new version is served, and then while the server builds its views, JSON
            # texts and id tables in the background.
            while seen is None or time.perf_counter() - seen < args.reload_watch:
                if switched is None and pointer.read_bytes() != before:
                    switched = time.perf_counter()  # the publish is committed
                t = time.perf_counter()
                reply = await conn.call(raw)
                phase = "swap" if seen is None else "after"
                slowest[phase] = max(slowest[phase], time.perf_counter() - t)
                if seen is None and int(reply.headers[b"x-bcemb-latest"]) == len(dims) - 1:
                    seen = time.perf_counter()
                    switched = switched or seen
                await asyncio.sleep(0.002)
            if await publisher.wait() != 0:
                raise SystemExit("the publish failed")
            conn.close()
            return seen - switched, slowest["swap"], slowest["after"]

        reload_s, slowest, after = asyncio.run(reload_run())
        print(
            f"hot reload: new version served {reload_s:.2f} s after the publish switched CURRENT; "
            f"slowest request until then {slowest * 1000:.1f} ms, and in the {args.reload_watch:.0f} s "
            f"after (views, JSON texts and id tables built in the background) {after * 1000:.1f} ms"
        )
        load1 = os.getloadavg()[0]
        print(f"machine load average {load1:.1f} at the end\n")
        for name, value in lines.items():
            print(f"{name} {value:.3f}")
        print(f"load_rss_growth {growth:.4f}")
        print(f"reload_seconds {reload_s:.3f}")
        print(f"reload_slowest_ms {slowest * 1000:.1f}")
        print(f"reload_after_slowest_ms {after * 1000:.1f}")
        print(f"loadavg {max(load0, load1):.1f}")
        print(f"materialized_versions {len(views)}")
        print(f"p99_ratio_1id {lines['p99_ratio_1id_json']:.3f}")
        print(f"p99_ratio_100ids {lines['p99_ratio_100ids_json']:.3f}")
        print(f"binary_10k_ratio {binary_ratio:.3f}")
        print(f"load_rps {rps:.1f}")
        print(f"load_errors {errors}")
    finally:
        for proc in (ours, floor):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


_PUBLISH = "import sys; from bcemb.store import publish; publish(sys.argv[1], sys.argv[2], check_model=False)"


def _body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


if __name__ == "__main__":
    main()
