"""Serving cost per vector of each backward-transform family, through ``EmbeddingStore.get``.

One store per family, with the same latest embeddings and the same dimensions ``D_0..D_K``
(every link ``B_1..B_K`` of that family): ``linear`` (the paper), ``orthogonal``,
``low-rank`` (rank 16) and ``mlp`` (hidden 128). Linear families are served with one composed
``[D_0, D_K]`` product whatever ``K``; the non-linear ``mlp`` is applied link by link. For each
call size, ``get(ids, version=0)`` of a family is timed alternately with the linear store's
(same ids), and with ``get(ids)`` of the latest version (no transform) to isolate the
transform's share. Prints ``name value`` lines:

* ``us_per_vector_<family>_<n>``: ``get(version=0)`` time per vector;
* ``transform_us_per_vector_<family>_<n>``: minus the latest-version ``get`` (rows only);
* ``ratio_vs_linear_<family>_<n>``: median time over the linear store's in the same run.

Usage:
    python benchmarks/transform_cost.py [--dims 256,320,384,448,512] [--sizes 1,100,10000]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared benchmark helpers
from _timing import median_pair  # noqa: E402

FAMILIES = ("linear", "orthogonal", "low-rank", "mlp")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--dims", default="256,320,384,448,512", help="D_0..D_K")
    parser.add_argument("--sizes", default="1,100,10000", help="ids per call")
    parser.add_argument("--repeats", type=int, default=400, help="calls per size (fewer for large sizes)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads, user_api="blas")
    torch.set_num_threads(args.threads)

    from bcemb.store import EmbeddingStore, publish
    from bcemb.store._testing import plain_graph, write_fake_run

    dims = [int(d) for d in args.dims.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bcemb-transform-cost-"))
    try:
        graph = plain_graph(args.users, args.items)
        stores = {}
        for family in FAMILIES:
            run = write_fake_run(work / family, graph, dims=dims, random_embeddings=True,
                                 transform_kinds=[family] * (len(dims) - 1))
            publish(run, work / f"store-{family}", check_model=False)
            stores[family] = EmbeddingStore(work / f"store-{family}")
        print(f"dims {args.dims} (K = {len(dims) - 1} links), threads {args.threads}")
        for family, s in stores.items():
            print(f"applied_{family} {s.describe()[0]['applied'].replace(' ', '-')}")
        rng = np.random.default_rng(0)
        all_ids = stores["linear"].ids("user").tolist()
        results = []
        for n in sizes:
            ids = [all_ids[i] for i in rng.choice(len(all_ids), size=n, replace=False)]
            repeats = max(20, args.repeats // max(1, n // 100)) if n > 100 else args.repeats
            for family, s in stores.items():
                lin, ours = median_pair(
                    lambda ids=ids: stores["linear"].get(ids, version=0),
                    lambda ids=ids, s=s: s.get(ids, version=0),
                    repeats,
                )
                latest, _ = median_pair(lambda ids=ids, s=s: s.get(ids), lambda ids=ids, s=s: s.get(ids, version=0), repeats)
                results.append((family, n, ours / n * 1e6, (ours - latest) / n * 1e6, ours / lin))
        for family, n, per, transform, ratio in results:
            print(f"us_per_vector_{family}_{n} {per:.3f}")
            print(f"transform_us_per_vector_{family}_{n} {transform:.3f}")
        for family, n, _, _, ratio in results:
            print(f"ratio_vs_linear_{family}_{n} {ratio:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
