"""Scale figures of docs/results.md ("Scale"): full against sampled training as graphs grow.

Three subcommands, each printing ``name value`` lines:

``growth``
    Synthetic graphs of MovieLens-100K's shape at 1x, 4x and 16x its edges (users and items
    scaled alike). For each size and mode (``full``, ``sampled``), a fresh process builds
    version 0, times ``--steps`` training steps of the paper's version-0 model (2 layers x
    256, batch 2048) and reports seconds per epoch extrapolated from them (median s/step x
    steps per epoch + BPR sampling), in CPU seconds (what the step costs) and wall seconds
    (which also count other jobs on a shared machine), and peak resident memory of the
    process and of its training phase alone. Writes a plot with ``--plot``.
``grocery``
    A synthetic graph of the paper's Grocery size (127,496 users, 41,320 items, 1.1M edges)
    trains version 0 at the paper's Grocery size (1 layer x 256) in sampled mode until
    validation Recall@50 stops improving (``--patience`` evaluations), reporting wall time,
    the Recall@50 curve and peak memory; every evaluation is printed (flushed) and appended
    to ``--out``/curve.csv as it happens.
``curves``
    Recall@50 against wall-clock seconds from the ``curve.csv`` of run folders (e.g. full
    and sampled BC-Aligner runs on ML-100K), plotted with ``--plot``.

Usage::

    python benchmarks/scale.py growth --plot docs/figures/scale_growth.png
    python benchmarks/scale.py grocery --out runs/grocery
    python benchmarks/scale.py curves --run full=RUN_A --run sampled=RUN_B --plot docs/figures/recall_vs_time.png
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from bcemb.data.datasets.synthetic import make_synthetic
from bcemb.evaluation.intended import RecallEvaluator
from bcemb.experiments.config import SIZE_TABLES
from bcemb.experiments.context import ExperimentData
from bcemb.models.sage import SageConfig, SageEncoder
from bcemb.training.config import TrainConfig
from bcemb.training.recommender import BPRObjective
from bcemb.training.trainer import train_model, train_step

#: MovieLens-100K: users, items, edges.
ML100K = (943, 1682, 100_000)
#: The paper's Amazon Grocery 5-core size.
GROCERY = (127_496, 41_320, 1_100_000)


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _reset_peak() -> bool:
    """Reset this process's peak resident memory (Linux ``clear_refs``); False where unsupported.

    Building a synthetic graph peaks higher than training on it; resetting after the build
    lets :func:`_hwm_gib` report the training phase alone (resident data included).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _hwm_gib() -> float:
    """Peak resident memory since the last :func:`_reset_peak` (``VmHWM``), GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def _one_size(scale: int, mode: str, steps: int, batch: int, fanouts: Sequence[int], seed: int) -> dict:
    """Time ``steps`` steps of version 0 on the ``scale``-x graph (run in a fresh process)."""
    u, i, e = (x * scale for x in ML100K)
    graph = make_synthetic(num_users=u, num_items=i, num_edges=e, seed=seed)
    data = ExperimentData(graph).version(0)
    layers, dim = SIZE_TABLES["amazon"][0]
    torch.manual_seed(seed)
    model = SageEncoder(SageConfig(layers, dim, {n: len(g.vocab) for n, g in graph.item_features.items()}))
    objective = BPRObjective(data, mode=mode, fanouts=tuple(fanouts))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    batches = iter(objective.batches(batch, gen))
    first = next(batches)
    # The epoch's BPR draws happen at the first batch.
    s_sample, c_sample = time.perf_counter() - t0, time.process_time() - c0
    if mode == "full":
        data.train_graph.sage_plan(layers)
    else:
        data.train_graph.sampling_index()
    reset = _reset_peak()
    train_step(model, objective, first, opt)  # warm-up
    wall, cpu = [], []
    for _ in range(steps):
        b = next(batches)
        t, c = time.perf_counter(), time.process_time()
        train_step(model, objective, b, opt)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    # CPU seconds (one thread) are what the step costs; wall seconds also count the time that
    # other jobs on a shared machine took from it.
    s_step, c_step = (sorted(x)[len(x) // 2] for x in (wall, cpu))
    per_epoch = math.ceil(len(data.train_user) / batch)
    return {
        "scale": scale, "mode": mode, "edges": e, "train_edges": len(data.train_user),
        "nodes": data.train_graph.num_nodes, "s_step": s_step, "cpu_s_step": c_step,
        "steps_per_epoch": per_epoch, "s_epoch": per_epoch * s_step + s_sample,
        "cpu_s_epoch": per_epoch * c_step + c_sample, "peak_gib": _peak_gib(),
        "train_peak_gib": _hwm_gib() if reset else float("nan"), "steps_timed": steps,
    }


def growth(args: argparse.Namespace) -> None:
    """Full vs sampled time per epoch and peak memory at growing sizes (one process each)."""
    if args.from_json:  # re-plot a finished run
        _plot_growth(json.loads(Path(args.from_json).read_text()), Path(args.plot))
        return
    rows = []
    for scale in args.scales:
        for mode in ("full", "sampled"):
            cmd = [
                sys.executable, __file__, "_one", "--scale", str(scale), "--mode", mode,
                "--steps", str(args.steps), "--batch", str(args.batch),
                "--fanouts", ",".join(map(str, args.fanouts)), "--threads", str(args.threads),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"growth_failed {scale}x/{mode} {out.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"cpu_s_epoch {scale}x/{mode} {row['cpu_s_epoch']:.1f}\ns_epoch {scale}x/{mode} {row['s_epoch']:.1f}\npeak_gib {scale}x/{mode} {row['peak_gib']:.2f}\n"
                f"train_peak_gib {scale}x/{mode} {row['train_peak_gib']:.2f}\n"
                f"s_step {scale}x/{mode} {row['s_step']:.3f} (nodes {row['nodes']}, train edges {row['train_edges']})",
                flush=True,
            )
    if args.json and rows:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.plot and rows:
        _plot_growth(rows, Path(args.plot))


def _plot_growth(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for mode, marker in (("full", "o"), ("sampled", "s")):
        sel = [r for r in rows if r["mode"] == mode]
        x = [r["edges"] for r in sel]
        axes[0].plot(x, [r["cpu_s_epoch"] for r in sel], marker=marker, label=mode)
        axes[1].plot(x, [r["peak_gib"] for r in sel], marker=marker, label=mode)
    for ax, title in zip(axes, ("CPU seconds per epoch (1 thread, extrapolated)", "peak resident memory (GiB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("edges (1x, 4x, 16x MovieLens-100K)")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"plot {path}")


class _ReportingEvaluator:
    """An evaluator that also prints and appends a CSV row at each evaluation (flushed).

    The grocery run takes many minutes; its progress (epoch, elapsed, Recall@50, peak memory)
    must be readable while it runs, not only at its end.
    """

    def __init__(self, inner: RecallEvaluator, eval_every: int, csv_path: Path | None) -> None:
        self.inner = inner
        self.primary = inner.primary
        self.eval_every = eval_every
        self.csv_path = csv_path
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.rows: list[dict[str, float]] = []

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        t = time.perf_counter()
        metrics = self.inner(model)
        row = {
            "epoch": (len(self.rows) + 1) * self.eval_every,
            "elapsed_s": round(time.perf_counter() - self.start, 1),
            "cpu_s": round(time.process_time() - self.cpu_start, 1),  # all threads; wall also counts other jobs
            "eval_s": round(time.perf_counter() - t, 1),
            "recall@50": metrics["recall@50"],
            "peak_gib": round(_peak_gib(), 3),
        }
        self.rows.append(row)
        print(" ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        if self.csv_path is not None:
            new = not self.csv_path.exists()
            with self.csv_path.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
        return metrics


def grocery(args: argparse.Namespace) -> None:
    """Train version 0 of a Grocery-sized graph in sampled mode to a Recall@50 plateau."""
    t0 = time.perf_counter()
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "curve.csv").unlink(missing_ok=True)
    u, i, e = GROCERY
    graph = make_synthetic(num_users=u, num_items=i, num_edges=e, seed=args.seed)
    data = ExperimentData(graph).version(0)
    print(f"grocery_build_s {time.perf_counter() - t0:.1f} (nodes {data.train_graph.num_nodes}, "
          f"train edges {len(data.train_user)})", flush=True)
    layers, dim = SIZE_TABLES["grocery"][0]
    torch.manual_seed(args.seed)
    model = SageEncoder(SageConfig(layers, dim, {n: len(g.vocab) for n, g in graph.item_features.items()}))
    objective = BPRObjective(data, mode="sampled", fanouts=tuple(args.fanouts))
    evaluator = _ReportingEvaluator(
        RecallEvaluator(data, (50,), 50), 1, out_dir / "curve.csv" if out_dir is not None else None
    )
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch, lr=args.lr, eval_every=1, patience=args.patience,
        warmup_epochs=0,
    )
    out = train_model(model, objective, evaluator, config, generator=torch.Generator().manual_seed(args.seed),
                      show_progress=False)
    summary = {
        "users": u, "items": i, "edges": e, "nodes_v0": data.train_graph.num_nodes,
        "train_edges_v0": len(data.train_user), "layers": layers, "dim": dim, "batch": args.batch,
        "fanouts": list(args.fanouts), "lr": args.lr, "patience": args.patience,
        "train_minutes": out.seconds / 60, "total_minutes": (time.perf_counter() - t0) / 60,
        "best_recall@50": out.metrics["recall@50"], "best_epoch": out.best_epoch,
        "epochs_run": out.epochs_run, "plateau": out.epochs_run < args.epochs, "peak_gib": _peak_gib(),
    }
    print(f"grocery_train_minutes {summary['train_minutes']:.1f}")
    print(f"grocery_total_minutes {summary['total_minutes']:.1f}")
    print(f"grocery_best_recall@50 {out.metrics['recall@50']:.4f} (epoch {out.best_epoch} of {out.epochs_run})")
    print(f"grocery_plateau {summary['plateau']}")
    print(f"grocery_peak_gib {summary['peak_gib']:.2f}", flush=True)
    if out_dir is not None:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))


def curves(args: argparse.Namespace) -> None:
    """Recall@50 against wall-clock seconds of each run's versions."""
    series = {}
    for spec in args.run:
        label, _, folder = spec.partition("=")
        for path in sorted(Path(folder).glob("version_*/curve.csv")):
            with path.open() as fh:
                rows = list(csv.DictReader(fh))
            if rows and "seconds" in rows[0]:
                k = path.parent.name.split("_")[-1]
                series[(label, k)] = [(float(r["seconds"]), float(r["recall@50"])) for r in rows]
                best = max(r for _, r in series[(label, k)])
                print(f"best_recall@50 {label}/k{k} {best:.4f} (after {series[(label, k)][-1][0]:.0f} s)")
    if args.plot and series:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ks = sorted({k for _, k in series})
        fig, axes = plt.subplots(1, len(ks), figsize=(3 * len(ks), 3), squeeze=False)
        for ax, k in zip(axes[0], ks, strict=True):
            for (label, kk), pts in sorted(series.items()):
                if kk == k:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label)
            ax.set_title(f"version {k}")
            ax.set_xlabel("seconds")
        axes[0][0].set_ylabel("validation Recall@50")
        axes[0][0].legend()
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"plot {args.plot}")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("growth")
    g.add_argument("--scales", type=_ints, default=[1, 4, 16])
    g.add_argument("--steps", type=int, default=4)
    g.add_argument("--batch", type=int, default=2048)
    g.add_argument("--fanouts", type=_ints, default=[10, 10])
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--plot", default=None)
    g.add_argument("--json", default=None, help="write the measured rows here")
    g.add_argument("--from-json", default=None, help="only plot (--plot) the rows of an earlier --json")
    one = sub.add_parser("_one")  # internal: one size in a fresh process
    one.add_argument("--scale", type=int, required=True)
    one.add_argument("--mode", required=True)
    one.add_argument("--steps", type=int, default=4)
    one.add_argument("--batch", type=int, default=2048)
    one.add_argument("--fanouts", type=_ints, default=[10, 10])
    one.add_argument("--threads", type=int, default=1)
    gr = sub.add_parser("grocery")
    gr.add_argument("--epochs", type=int, default=30)
    gr.add_argument("--batch", type=int, default=8192)
    gr.add_argument("--lr", type=float, default=4e-3)
    gr.add_argument("--patience", type=int, default=3)
    gr.add_argument("--fanouts", type=_ints, default=[10])
    gr.add_argument("--threads", type=int, default=1)
    gr.add_argument("--seed", type=int, default=0)
    gr.add_argument("--out", default=None, help="folder for curve.csv (written at every evaluation) and summary.json")
    cu = sub.add_parser("curves")
    cu.add_argument("--run", action="append", default=[], help="LABEL=RUN_FOLDER")
    cu.add_argument("--plot", default=None)
    args = parser.parse_args(argv)
    if hasattr(args, "threads"):
        torch.set_num_threads(args.threads)
    if args.cmd == "_one":
        print(json.dumps(_one_size(args.scale, args.mode, args.steps, args.batch, args.fanouts, 0)))
    else:
        {"growth": growth, "grocery": grocery, "curves": curves}[args.cmd](args)


if __name__ == "__main__":
    main()
