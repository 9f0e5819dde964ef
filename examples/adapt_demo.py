"""Two versions of vectors from independently trained models, as ``bcemb adapt`` input.

Writes ``OUT/old.parquet`` and ``OUT/new.parquet`` (``id``, ``vector``, ``kind`` and, for
items, a ``genre`` label: the item's first ``category`` feature) from the item and user
embeddings of versions ``K-1`` and ``K`` of a finished training run: for example Non-BC's
models, which were trained without any alignment, like models of two teams that never
coordinated.

Usage: ``python examples/adapt_demo.py RUN OUT [--old-version K-1 --new-version K]`` (default:
the run's last two finished versions)
then ``bcemb adapt --old OUT/old.parquet --new OUT/new.parquet --family procrustes --label genre``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bcemb import run_folder
from bcemb.compat import write_vectors
from bcemb.data.io import load_graph


def export(run: Path, k: int, path: Path) -> None:
    """Version ``k``'s vectors of a run (users and items) as an ``adapt`` input file."""
    emb = run_folder.read_embeddings(run, k)
    graph = load_graph(run / "graph")
    users, items = emb["user_emb"].numpy(), emb["item_emb"].numpy()
    group = graph.item_features.get("category")
    genre = [(group.bag(i)[:1] or ["none"])[0] if group else "none" for i in range(len(items))]
    ids = np.concatenate([graph.user_ids[: len(users)].astype(str), graph.item_ids[: len(items)].astype(str)])
    write_vectors(path, ids, np.vstack([users, items]), extra={
        "kind": ["user"] * len(users) + ["item"] * len(items),
        "genre": [None] * len(users) + genre,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--old-version", type=int, default=None)
    parser.add_argument("--new-version", type=int, default=None)
    args = parser.parse_args()
    done = run_folder.finished_versions(args.run)
    if len(done) < 2:
        raise SystemExit(f"{args.run} has {len(done)} finished versions; two are needed")
    args.new_version = done[-1] if args.new_version is None else args.new_version
    args.old_version = args.new_version - 1 if args.old_version is None else args.old_version
    args.out.mkdir(parents=True, exist_ok=True)
    export(args.run, args.old_version, args.out / "old.parquet")
    export(args.run, args.new_version, args.out / "new.parquet")
    print(f"wrote {args.out / 'old.parquet'} (version {args.old_version}) and {args.out / 'new.parquet'} (version {args.new_version})")


if __name__ == "__main__":
    main()
