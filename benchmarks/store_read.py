"""In-process read speed: ``EmbeddingStore.get`` against its bound, in one run.

The bound is what ``get`` cannot avoid: NumPy fancy-indexing of the same rows of the same
memory-mapped latest embeddings, then the same product with the same composed matrix
``W_1 ... W_k`` (ids already turned into rows, nothing checked, no tagging). ``get`` adds the
id lookup, the version check, the ``fstat`` that detects a served file changed after opening,
and the space tag. Timings alternate between the two, one call at a time; the figure is the
ratio of the medians (bound time / our time; 1.0 means no overhead, the target is >= 0.5).

Usage:
    python benchmarks/store_read.py [--users 50000] [--dims 256,384,512] [--sizes 1,100,10000]

Prints ``name value`` lines; the last three are ``get_ratio_1``, ``get_ratio_100`` and
``get_ratio_10k``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared benchmark helpers
from _timing import median_pair  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--dims", default="256,384,512", help="D_0..D_K (the product maps D_K -> D_0)")
    parser.add_argument("--sizes", default="1,100,10000", help="ids per call")
    parser.add_argument("--repeats", type=int, default=2000, help="calls per size (fewer for large sizes)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (both sides)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import numpy as np
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads, user_api="blas")

    from bcemb.store import EmbeddingStore, publish
    from bcemb.store._testing import plain_graph, write_fake_run

    dims = [int(d) for d in args.dims.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bcemb-read-bench-"))
    try:
        t0 = time.perf_counter()
        run = write_fake_run(
            work / "run", plain_graph(args.users, args.items), dims=dims, random_embeddings=True
        )
        publish(run, work / "store", check_model=False)
        t1 = time.perf_counter()
        store = EmbeddingStore(work / "store")
        t2 = time.perf_counter()
        print(f"store {store!r}")
        print(f"build_s {t1 - t0:.1f}")
        print(f"open_verified_s {t2 - t1:.3f}")
        rng = np.random.default_rng(0)
        all_ids = store.ids("user").tolist()
        emb = store._emb["user"]  # the same memory-mapped matrix get() reads
        matrix = store.matrix(0)  # the same composed [D_0, D_K] matrix
        names = {1: "1", 100: "100", 10_000: "10k"}
        ratios = {}
        for n in sizes:
            ids = [all_ids[i] for i in rng.choice(len(all_ids), size=n, replace=False)]
            rows = store.rows(ids)
            np.testing.assert_array_equal(store.get(ids, version=0), emb[rows] @ matrix.T)
            repeats = max(20, args.repeats // max(1, n // 100)) if n > 100 else args.repeats
            bound, ours = median_pair(
                lambda rows=rows: emb[rows] @ matrix.T,
                lambda ids=ids: store.get(ids, version=0),
                repeats,
            )
            latest_bound, latest_ours = median_pair(
                lambda rows=rows: emb[rows], lambda ids=ids: store.get(ids), repeats
            )
            name = names.get(n, str(n))
            print(f"bound_us_{name} {bound * 1e6:.1f}")
            print(f"get_us_{name} {ours * 1e6:.1f}")
            print(f"get_latest_us_{name} {latest_ours * 1e6:.1f} (rows only: {latest_bound * 1e6:.1f})")
            ratios[name] = bound / ours
        for name, r in ratios.items():
            print(f"get_ratio_{name} {r:.2f}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
