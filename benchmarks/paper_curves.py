"""Training curves at the paper's widths: validation Recall@50 and loss every few epochs.

Trains single versions of ML-100K (Non-BC: each version on its own, so version 4 needs no
versions before it) with the paper profile's optimiser (Adam 1e-3, batch 2048, weight decay
0.01), no early stopping and no warm-up, and evaluates every ``--eval-every`` epochs. Writes
``paper_width_curves_v<k>.csv`` per version and ``paper_width_curves_by_version.png`` under
``--out``; a version already written is not trained again (delete its CSV to redo it), and
an interrupted version resumes from its checkpoint under ``--work``.

    .venv/bin/python benchmarks/paper_curves.py --versions 0,4 --epochs 100 --eval-every 5
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path

import torch


def train_curve(k: int, epochs: int, eval_every: int, seed: int, work: Path) -> list[dict[str, float]]:
    """One version's curve (rows: epoch, loss, seconds, metrics)."""
    from bcemb.data.datasets import load_dataset
    from bcemb.experiments.config import profile_config
    from bcemb.experiments.context import ExperimentData
    from bcemb.seeding import derive_seed
    from bcemb.training import train_model

    cfg = profile_config("paper", seed=seed)
    data = ExperimentData(load_dataset(cfg.dataset), times=cfg.times)
    train = dataclasses.replace(cfg.train, epochs=epochs, eval_every=eval_every, warmup_epochs=0, patience=None)
    cfg.train = train
    objective, evaluator = data.task(k, cfg)
    torch.manual_seed(derive_seed(seed, "paper-curve", k))
    model = data.new_model(cfg, k)
    out = train_model(
        model, objective, evaluator, train,
        generator=torch.Generator().manual_seed(derive_seed(seed, "paper-curve-batches", k)),
        show_progress=True, desc=f"version {k}", checkpoint=work / f"v{k}.ckpt",
    )  # fmt: skip
    return out.curve


def plot(rows: dict[int, list[dict[str, float]]], path: Path) -> None:
    """Recall@50 and loss against epochs, one line per version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, curve in sorted(rows.items()):
        epochs = [r["epoch"] for r in curve]
        axes[0].plot(epochs, [100 * r["recall@50"] for r in curve], marker="o", ms=3, label=f"version {k}")
        axes[1].plot(epochs, [r["loss"] for r in curve], marker="o", ms=3, label=f"version {k}")
    axes[0].set_ylabel("validation Recall@50 (%)")
    axes[1].set_ylabel("training loss (BPR + weight decay)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("ML-100K at the paper's widths (v0: 2 x 256, v4: 3 x 512), Adam 1e-3, batch 2048")
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", default="0,4")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--work", type=Path, default=Path("runs/paper-curves"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "config.json").write_text(json.dumps(vars(args), default=str, indent=1))
    curves: dict[int, list[dict[str, float]]] = {}
    for k in (int(v) for v in args.versions.split(",")):
        path = args.out / f"paper_width_curves_v{k}.csv"
        if path.exists():  # finished before: keep it
            with path.open() as f:
                curves[k] = [{n: float(v) for n, v in row.items()} for row in csv.DictReader(f)]
            continue
        started = time.perf_counter()
        curve = train_curve(k, args.epochs, args.eval_every, args.seed, args.work)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(curve[0]))
            writer.writeheader()
            writer.writerows(curve)
        curves[k] = curve
        best = max(curve, key=lambda r: r["recall@50"])
        print(
            f"version {k}: best Recall@50 {100 * best['recall@50']:.1f} % at epoch {best['epoch']:.0f}, "
            f"last {100 * curve[-1]['recall@50']:.1f} %, {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    plot(curves, args.out / "paper_width_curves_by_version.png")
    for k, curve in sorted(curves.items()):
        print(f"best_recall50_v{k} {max(r['recall@50'] for r in curve):.4f}")


if __name__ == "__main__":
    main()
