"""``report.md`` with Table 3 and Figures 3 to 5 (PNG) from a benchmark folder."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bcemb.data.consumer_tasks import TASKS  # noqa: E402
from bcemb.evaluation.summary import KEEP_ALL, PAPER_TABLE3, per_version, table3  # noqa: E402
from bcemb.methods import joint_methods, method_info, method_order  # noqa: E402
from bcemb.utils import atomic_write_bytes, read_json  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["write_report"]

METRIC_TITLES = {
    "intended": "(1) intended-task degradation (%)",
    "unintended": "(2) unintended-task degradation (%)",
    "align_error": "(3) embedding alignment error (L2)",
}


def _default_rows(frame: pd.DataFrame, lam: float) -> pd.DataFrame:
    """Rows of every method at the default lambda (non-joint methods have one lambda)."""
    joint = frame["method"].isin(joint_methods())
    return frame[~joint | (frame["lam"] == lam)]


def _fmt(x: float, digits: int = 2) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _table_md(t3: pd.DataFrame, lam: float) -> str:
    t = _default_rows(t3, lam).set_index("method")
    lines = [
        "| method | (1) intended | (2) unintended | (1)+(2) | (3) align err | Recall@50 | ROC-AUC "
        "| paper (1) | paper (2) | paper (1)+(2) | paper (3) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in [KEEP_ALL, *method_order()]:
        if m not in t.index:
            continue
        r = t.loc[m]
        paper = PAPER_TABLE3.get(m, (float("nan"),) * 4)  # methods beyond the paper: "—"
        lines.append(
            f"| {method_info(m).label} | {_fmt(r['intended'])} | {_fmt(r['unintended'])} | {_fmt(r['sum'])} "
            f"| {_fmt(r['align_error'])} | {_fmt(100 * r['recall'])} | {_fmt(100 * r['auc'])} "
            f"| {_fmt(paper[0])} | {_fmt(paper[1])} | {_fmt(paper[2])} | {_fmt(paper[3])} |"
        )
    return "\n".join(lines)


def _save(fig: plt.Figure, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _figure3(pv: pd.DataFrame, lam: float, path: Path) -> None:
    pv = _default_rows(pv, lam)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, (col, title) in zip(axes, METRIC_TITLES.items(), strict=True):
        for m in method_order():
            g = pv[pv["method"] == m].sort_values("version")
            if len(g):
                info = method_info(m)
                ax.plot(g["version"], g[col], label=info.label, **{"linewidth": 1.2, **info.style})
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("version k (time t_k)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Figure 3: the three metrics over time")
    _save(fig, path)


def _figure4(lam: float, path: Path, rows: pd.DataFrame) -> None:
    fig, axes = plt.subplots(1, len(TASKS), figsize=(18, 3.8))
    auc = rows[rows["metric"] == "auc"].groupby(["method", "lam", "task", "version"], dropna=False)["value"].mean().reset_index()
    for ax, task in zip(axes, TASKS, strict=True):
        for m in (KEEP_ALL, "bc-aligner", "non-bc"):
            g = auc[(auc["method"] == m) & (auc["task"] == task)]
            if m != KEEP_ALL:
                g = g[g["lam"] == lam] if m == "bc-aligner" else g
            g = g.sort_values("version")
            if len(g):
                info = method_info(m)
                ax.plot(g["version"], g["value"], label=info.label, **info.style)
        ax.set_title(task.replace("_", " "), fontsize=10)
        ax.set_xlabel("version k")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ROC-AUC of C_0")
    axes[0].legend(fontsize=8)
    fig.suptitle("Figure 4: each unintended task over time (BC-Aligner vs the real ver-0 embeddings)")
    _save(fig, path)


def _figure5(t3: pd.DataFrame, path: Path) -> bool:
    sweep = t3[t3["method"].isin(joint_methods())]
    if sweep.groupby("method")["lam"].nunique().max() < 2:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, (col, title) in zip(axes, METRIC_TITLES.items(), strict=True):
        for m in joint_methods():
            g = sweep[sweep["method"] == m].sort_values("lam")
            if len(g):
                info = method_info(m)
                ax.plot(g["lam"], g[col], label=info.label, **info.style)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("lambda")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Figure 5: the trade-off as lambda varies")
    _save(fig, path)
    return True


def write_report(folder: str | Path, *, lam: float | None = None) -> Path:
    """Write ``report.md``, ``table3.csv``, ``per_version.csv`` and the figures into ``folder``.

    ``lam`` is the lambda of Table 3 (None: the one the benchmark was run with).
    """
    folder = Path(folder)
    results = folder / "results.parquet"
    if not results.is_file():
        raise FileNotFoundError(f"no results in {folder}: run `bcemb benchmark --out {folder}` first")
    rows = pd.read_parquet(results)
    meta = read_json(folder / "benchmark.json") if (folder / "benchmark.json").is_file() else {}
    if lam is None:
        lam = float(meta.get("config", {}).get("lam", 16.0))
    pv = per_version(rows)
    t3 = table3(rows)
    atomic_write_bytes(folder / "table3.csv", t3.to_csv(index=False).encode())
    atomic_write_bytes(folder / "per_version.csv", pv.to_csv(index=False).encode())
    _figure3(pv, lam, folder / "figure3_metrics_over_time.png")
    _figure4(lam, folder / "figure4_tasks_bc_aligner.png", rows)
    has5 = _figure5(t3, folder / "figure5_lambda.png")
    cfg = meta.get("config", {})
    env = meta.get("environment", {})
    t3l = t3[t3["method"].isin(joint_methods())].sort_values(["method", "lam"])
    sweep_md = "\n".join(
        ["| method | lambda | (1) | (2) | (1)+(2) | (3) |", "|---|---|---|---|---|---|"]
        + [f"| {method_info(r.method).label} | {r.lam:g} | {_fmt(r.intended)} | {_fmt(r.unintended)} | {_fmt(r['sum'])} "
           f"| {_fmt(r.align_error)} |" for _, r in t3l.iterrows()]
    )
    ref = t3[t3["method"] == KEEP_ALL]
    text = f"""# bcemb benchmark report

Dataset: `{cfg.get('dataset', '?')}` · profile: `{cfg.get('profile', '?')}` · seed: {cfg.get('seed', '?')} ·
sizes: {cfg.get('sizes', '?')} · consumer seeds: {cfg.get('consumer', {}).get('seeds', '?')} ·
bcemb {env.get('bcemb', '?')}, torch {env.get('torch', '?')}, PyG {env.get('torch_geometric', '?')}, git {str(env.get('git'))[:10]}

Keep-All absolute: Recall@50 {_fmt(100 * float(ref['recall'].iloc[0])) if len(ref) else '—'},
ROC-AUC {_fmt(100 * float(ref['auc'].iloc[0])) if len(ref) else '—'} (the paper, Musical Instruments: 12.13 and 68.66).

## Table 3 (lambda = {lam:g}; degradations in % relative to Keep-All, averaged over versions 1..K)

Our numbers on the left; the paper's Amazon Musical Instruments figures on the right, for reference only
(another dataset and, for the quick profile, smaller models trained for fewer epochs).

{_table_md(t3, lam)}

## Figure 3: the three metrics over time

![Figure 3](figure3_metrics_over_time.png)

## Figure 4: each unintended task over time

![Figure 4](figure4_tasks_bc_aligner.png)

## Figure 5: lambda

{'![Figure 5](figure5_lambda.png)' if has5 else '_No lambda sweep in this run (pass `--lams 1,2,4,8,16,32`)._'}

{sweep_md}

Raw rows: `results.parquet` (method, lam, version, task, seed, metric, value); tables: `table3.csv`,
`per_version.csv`.
"""
    atomic_write_bytes(folder / "report.md", text.encode())
    return folder / "report.md"
