"""Data-parallel sampled training of one version on a small synthetic graph (an example).

Start one process per rank with ``torchrun`` (gloo on CPU, NCCL with ``--device cuda``)::

    torchrun --standalone --nproc_per_node=2 -m bcemb.experiments.ddp_run --out curve.json

or a single process with ``python -m bcemb.experiments.ddp_run --out curve.json``. Rank 0
writes ``--out``, rank ``r`` ``<stem>.rank<r>.json``: the loss/Recall@20 curve and a
checksum of the trained weights (equal on every rank: the replicas stay one model).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from bcemb.training.distributed import init_from_env

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Train version 0 of a small synthetic graph in sampled mode; each rank writes its curve."""
    from bcemb.data.datasets.synthetic import make_synthetic
    from bcemb.evaluation.intended import RecallEvaluator
    from bcemb.experiments.context import ExperimentData
    from bcemb.models.sage import SageConfig, SageEncoder
    from bcemb.training.config import TrainConfig
    from bcemb.training.recommender import BPRObjective
    from bcemb.training.trainer import train_model

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the loss curve (rank 0)")
    parser.add_argument("--size", default="300,200,6000", help="USERS,ITEMS,EDGES")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--fanouts", default="-1", help="neighbours per hop (-1: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rank, size = init_from_env(args.device)
    u, i, e = (int(x) for x in args.size.split(","))
    graph = make_synthetic(num_users=u, num_items=i, num_edges=e, seed=args.seed)
    data = ExperimentData(graph, device=args.device).version(0)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = SageEncoder(SageConfig(2, args.dim, {n: len(g.vocab) for n, g in graph.item_features.items()}))
    model = model.to(args.device)
    fanouts = tuple(int(x) for x in args.fanouts.split(","))
    objective = BPRObjective(data, mode="sampled", fanouts=fanouts)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=1e-2, eval_every=1, device=args.device)
    out = train_model(model, objective, RecallEvaluator(data, (20,), 20), config,
                      generator=torch.Generator().manual_seed(args.seed), show_progress=False)
    curve = [{"epoch": r["epoch"], "loss": r["loss"], "recall@20": r["recall@20"]} for r in out.curve]
    checksum = float(sum(p.double().sum() for p in model.state_dict().values() if p.is_floating_point()))
    path = args.out if rank == 0 else args.out.with_name(f"{args.out.stem}.rank{rank}{args.out.suffix}")
    path.write_text(json.dumps({"world_size": size, "rank": rank, "curve": curve, "checksum": checksum}))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
