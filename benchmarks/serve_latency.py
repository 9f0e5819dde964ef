"""Serving latency of ``bcemb serve`` (the real HTTP server) for 1, 100 and 10,000 ids per request.

Builds a store from a fake run (random embeddings at the paper's sizes, no training), starts
``python -m bcemb.serve`` on a free loopback port and times ``POST /embeddings`` for each
target version and request size (until the whole response body has arrived; the client's
JSON parsing is not timed), next to the baseline: the same ``EmbeddingStore.get`` call
in-process (no HTTP, no JSON), with the same single BLAS thread as the server. Prints p50
and p99 in milliseconds and the HTTP/in-process ratio of the medians. The largest request
size is also timed with ``"encoding": "base64"``.

    .venv/bin/python benchmarks/serve_latency.py                       # 100k users + 50k items
    .venv/bin/python benchmarks/serve_latency.py --users 20000 --items 10000 --repeats 50
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentiles(samples: list[float]) -> tuple[float, float]:
    a = np.array(samples) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--dims", default="256,320,384,448,512", help="D_0..D_K")
    parser.add_argument("--sizes", default="1,100,10000", help="ids per request")
    parser.add_argument(
        "--repeats", type=int, default=100, help="requests per cell (a tenth for 10,000 ids)"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import httpx
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # like the server (bcemb serve --blas-threads 1)

    from bcemb.store import EmbeddingStore, publish
    from bcemb.store._testing import plain_graph, write_fake_run

    dims = [int(d) for d in args.dims.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bcemb-serve-bench-"))
    t0 = time.perf_counter()
    run = write_fake_run(
        work / "run", plain_graph(args.users, args.items), dims=dims, random_embeddings=True
    )
    publish(run, work / "store", check_model=False)
    store = EmbeddingStore(work / "store")
    print(f"store: {store!r}, built in {time.perf_counter() - t0:.1f} s at {work}")

    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bcemb.serve",
            "--store",
            str(work / "store"),
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--max-body-bytes",
            str(16 << 20),
        ],
    )
    base = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(0)
    users = store.ids("user")
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
            print(f"server: {base} (uvicorn, 1 process, 1 BLAS thread), cpu")
            header = (
                f"{'version':>7} {'dim':>4} {'ids':>6} {'enc':>6} | {'http p50':>9} {'http p99':>9} | "
                f"{'get p50':>8} {'get p99':>8} | {'ratio p50':>9}"
            )
            print(header)
            print("-" * len(header))
            for version in sorted({0, len(dims) // 2, len(dims) - 1}):
                cells = [(n, "json") for n in sizes] + [(max(sizes), "base64")]
                for n, encoding in cells:
                    reps = max(5, args.repeats // 10) if n >= 10_000 else args.repeats
                    http, local = [], []
                    for r in range(reps + 3):  # 3 warm-up requests
                        ids = [str(i) for i in rng.choice(users, size=n, replace=n > len(users))]
                        body = {
                            "ids": ids,
                            "version": version,
                            "kind": "user",
                            "encoding": encoding,
                        }
                        t = time.perf_counter()
                        resp = client.post("/embeddings", json=body)
                        resp.read()
                        dt = time.perf_counter() - t
                        if resp.status_code != 200:
                            raise SystemExit(f"HTTP {resp.status_code}: {resp.text[:200]}")
                        t = time.perf_counter()
                        store.get(ids, version=version)
                        dl = time.perf_counter() - t
                        if r >= 3:
                            http.append(dt)
                            local.append(dl)
                    hp50, hp99 = _percentiles(http)
                    lp50, lp99 = _percentiles(local)
                    print(
                        f"{version:>7} {dims[version]:>4} {n:>6} {encoding:>6} | {hp50:>7.2f}ms {hp99:>7.2f}ms | "
                        f"{lp50:>6.2f}ms {lp99:>6.2f}ms | {hp50 / lp50:>8.1f}x"
                    )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
