"""Why sampled training could lag full training: one version trained both ways, no alignment.

Trains version ``--version`` of ML-100K (quick-profile schedule: batch 8,192, lr 4e-3, 24
epochs, evaluation every 3) in full and in sampled mode from the same initial weights and
batches, and prints, at every evaluation, validation Recall@50 twice: with the BatchNorm running
statistics that training left (what evaluation uses) and with statistics recomputed on the full
graph (one forward pass in train mode, cumulative average). The first separates the cost of
sampling from the alignment's; the second shows how much of a curve's noise is the running
statistics'.

Usage::

    python benchmarks/sampled_quality.py --version 2 --layers 3 --dim 48
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from bcemb.data.datasets import DATASETS
from bcemb.evaluation.intended import RecallEvaluator
from bcemb.experiments.context import ExperimentData
from bcemb.models.sage import SageConfig, SageEncoder
from bcemb.training.recommender import BPRObjective, VersionData
from bcemb.training.trainer import train_step


def _full_graph_bn(model: SageEncoder, data: VersionData) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are those of one full-graph pass."""
    out = copy.deepcopy(model)
    for norm in out.norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: exactly this pass's statistics
    out.train()
    with torch.no_grad():
        out(data.train_graph)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, default=2)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--dim", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--fanouts", type=int, nargs="+", default=[25])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = ExperimentData(DATASETS.get("ml-100k")())
    version = data.version(args.version)
    evaluator = RecallEvaluator(version, (50,), 50)
    for mode in ("sampled", "full"):
        torch.manual_seed(args.seed)
        model = SageEncoder(SageConfig(args.layers, args.dim, data.feature_sizes))
        objective = BPRObjective(version, mode=mode, fanouts=tuple(args.fanouts))
        opt = torch.optim.Adam(model.parameters(), lr=4e-3)
        gen = torch.Generator().manual_seed(args.seed)
        start = time.process_time()
        for epoch in range(1, args.epochs + 1):
            for batch in objective.batches(8192, gen):
                train_step(model, objective, batch, opt)
            if epoch % 3:
                continue
            running = evaluator(model)["recall@50"]
            full_bn = evaluator(_full_graph_bn(model, version))["recall@50"]
            print(f"recall@50 {mode} epoch {epoch} cpu_s {time.process_time() - start:.0f} "
                  f"running_bn {running:.4f} full_graph_bn {full_bn:.4f}", flush=True)


if __name__ == "__main__":
    main()
