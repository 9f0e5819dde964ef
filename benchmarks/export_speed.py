"""Export throughput (rows per second) next to its bound, a plain NumPy product over the same data.

Builds a store whose latest version has ``--rows`` nodes of ``--dim`` dimensions (random
embeddings, no training), then exports version 0 (``--old-dim`` dimensions) with the
single-process engine (and ``--dask`` with a local Dask cluster), and times the bound:
``z @ W.T`` on the same float32 matrix already in memory, with every BLAS thread. The chain
length does not change the cost: the composed matrix is one ``[D_0, D_k]`` product.

    .venv/bin/python benchmarks/export_speed.py                     # 1,000,000 rows x 512 dims
    .venv/bin/python benchmarks/export_speed.py --rows 200000 --dask
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="users + items of the latest version"
    )
    parser.add_argument("--dim", type=int, default=512, help="D_k")
    parser.add_argument("--old-dim", type=int, default=256, help="D_0, the export target")
    parser.add_argument("--workers", type=int, default=None, help="threads (single) / Dask workers")
    parser.add_argument(
        "--dask", action="store_true", help="also time the Dask engine (local cluster)"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from bcemb.store import EmbeddingStore, export_embeddings, publish
    from bcemb.store._testing import plain_graph, write_fake_run

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bcemb-export-bench-"))
    users = args.rows * 3 // 5
    try:
        t0 = time.perf_counter()
        run = write_fake_run(
            work / "run",
            plain_graph(users, args.rows - users),
            dims=(args.old_dim, args.dim),
            random_embeddings=True,
        )
        publish(run, work / "store", check_model=False)
        shutil.rmtree(run)
        store = EmbeddingStore(work / "store")
        n = store.num_nodes("user") + store.num_nodes("item")
        print(
            f"store: {n:,} rows x {args.dim} dims -> version 0 ({args.old_dim} dims); built in "
            f"{time.perf_counter() - t0:.1f} s; {len(store.entry(store.latest).parts)} partitions"
        )

        # The bound: the same product on data already in memory, every BLAS thread.
        z = np.concatenate([np.asarray(store._emb["user"]), np.asarray(store._emb["item"])])
        w = store.matrix(0)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            z @ w.T
            best = min(best, time.perf_counter() - t)
        bound = n / best
        del z
        print(f"{'numpy z @ W.T (bound)':<28} {best:>7.2f} s {bound:>14,.0f} rows/s")

        result = export_embeddings(store, work / "export-single", version=0, workers=args.workers)
        print(
            f"{'export (single process)':<28} {result.seconds:>7.2f} s {result.rows_per_second:>14,.0f} rows/s"
            f"   {result.rows_per_second / bound:.2f}x of the bound"
        )
        if args.dask:
            import importlib

            from dask.distributed import Client, LocalCluster

            t = time.perf_counter()
            n_workers = args.workers or min(4, os.cpu_count() or 1)
            with (
                LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    dashboard_address=None,
                    silence_logs=logging.WARNING,
                ) as cluster,
                Client(cluster) as client,
            ):
                client.run(
                    importlib.import_module, "bcemb.store.export"
                )  # warm the workers' imports
                print(
                    f"(local Dask cluster of {n_workers} workers started in {time.perf_counter() - t:.1f} s, not counted)"
                )
                result = export_embeddings(
                    store,
                    work / "export-dask",
                    version=0,
                    engine="dask",
                    scheduler=cluster.scheduler_address,
                )
            same = all(
                (work / "export-dask" / p.name).read_bytes() == p.read_bytes()
                for p in sorted((work / "export-single").iterdir())
            )
            print(
                f"{'export (dask)':<28} {result.seconds:>7.2f} s {result.rows_per_second:>14,.0f} rows/s"
                f"   {result.rows_per_second / bound:.2f}x of the bound; identical to single: {same}"
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
