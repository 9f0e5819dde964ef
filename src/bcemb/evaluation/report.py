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
from bcemb.evaluation.intervals import t_interval  # noqa: E402
from bcemb.evaluation.summary import (  # noqa: E402
    KEEP_ALL,
    PAPER_TABLE3,
    TABLE3_METRICS,
    over_seeds,
    paired_comparison,
    per_version,
    per_version_means,
    table3,
)
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


def _cell(r: pd.Series, col: str, scale: float = 1.0) -> str:
    """``mean`` or ``mean ± half width`` when the frame has a ``<col>_ci`` column."""
    text = _fmt(scale * r[col])
    ci = f"{col}_ci"
    if ci in r.index and np.isfinite(r[ci]):
        text += f" ± {_fmt(scale * r[ci])}"
    return text


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
            f"| {method_info(m).label} | {_cell(r, 'intended')} | {_cell(r, 'unintended')} | {_cell(r, 'sum')} "
            f"| {_cell(r, 'align_error')} | {_cell(r, 'recall', 100)} | {_cell(r, 'auc', 100)} "
            f"| {_fmt(paper[0])} | {_fmt(paper[1])} | {_fmt(paper[2])} | {_fmt(paper[3])} |"
        )
    return "\n".join(lines)


def _save(fig: plt.Figure, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _line(ax: plt.Axes, x: pd.Series, y: pd.Series, ci: pd.Series | None, label: str, style: dict) -> None:
    """A line, with 95% interval bars when ``ci`` (half widths over seeds) is given."""
    if ci is not None and np.isfinite(ci.to_numpy(dtype=float)).any():
        ax.errorbar(x, y, yerr=ci.fillna(0.0), label=label, capsize=3, **style)
    else:
        ax.plot(x, y, label=label, **style)


def _figure3(pv: pd.DataFrame, lam: float, path: Path) -> None:
    pv = _default_rows(pv, lam)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, (col, title) in zip(axes, METRIC_TITLES.items(), strict=True):
        for m in method_order():
            g = pv[pv["method"] == m].sort_values("version")
            if len(g):
                info = method_info(m)
                _line(ax, g["version"], g[col], g.get(f"{col}_ci"), info.label, {"linewidth": 1.2, **info.style})
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("version k (time t_k)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Figure 3: the three metrics over time")
    _save(fig, path)


def _figure4(lam: float, path: Path, rows: pd.DataFrame) -> None:
    fig, axes = plt.subplots(1, len(TASKS), figsize=(18, 3.8))
    keys = ["method", "lam", "task", "version"]
    auc = rows[rows["metric"] == "auc"]
    if "run_seed" in auc:  # several training seeds: mean and t-interval of the per-seed means
        per_seed = auc.groupby([*keys, "run_seed"], dropna=False)["value"].mean().reset_index()
        auc = per_seed.groupby(keys, dropna=False)["value"].agg(
            value="mean", value_ci=lambda v: t_interval(v.to_numpy())[1]
        ).reset_index()
    else:
        auc = auc.groupby(keys, dropna=False)["value"].mean().reset_index()
    for ax, task in zip(axes, TASKS, strict=True):
        for m in (KEEP_ALL, "bc-aligner", "non-bc"):
            g = auc[(auc["method"] == m) & (auc["task"] == task)]
            if m != KEEP_ALL:
                g = g[g["lam"] == lam] if m == "bc-aligner" else g
            g = g.sort_values("version")
            if len(g):
                info = method_info(m)
                _line(ax, g["version"], g["value"], g.get("value_ci"), info.label, dict(info.style))
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
                _line(ax, g["lam"], g[col], g.get(f"{col}_ci"), info.label, dict(info.style))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("lambda")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Figure 5: the trade-off as lambda varies")
    _save(fig, path)
    return True


def _load(folder: Path) -> tuple[dict[int, pd.DataFrame], dict]:
    """Result rows per training seed and the benchmark's metadata (one seed: key -1)."""
    if (folder / "seeds.json").is_file():
        meta = read_json(folder / "seeds.json")
        runs = {int(s): folder / f"seed_{int(s)}" for s in meta.get("seeds", [])}
        rows = {s: pd.read_parquet(d / "results.parquet") for s, d in runs.items() if (d / "results.parquet").is_file()}
        if not rows:
            raise FileNotFoundError(f"no seed of {folder} has results yet: run `bcemb benchmark --seeds ... --out {folder}`")
        first = runs[min(rows)]
        bench = read_json(first / "benchmark.json") if (first / "benchmark.json").is_file() else {}
        return rows, {**bench, "seeds": sorted(rows), "seeds_planned": meta.get("seeds", [])}
    results = folder / "results.parquet"
    if not results.is_file():
        raise FileNotFoundError(f"no results in {folder}: run `bcemb benchmark --out {folder}` first")
    meta = read_json(folder / "benchmark.json") if (folder / "benchmark.json").is_file() else {}
    return {-1: pd.read_parquet(results)}, meta


def _paired_md(paired: pd.DataFrame) -> str:
    lines = ["| metric | BC-Aligner − Joint-Lin-SLoss | 95% interval | seeds |", "|---|---|---|---|"]
    for _, r in paired.iterrows():
        lo, hi = r["difference"] - r["ci"], r["difference"] + r["ci"]
        interval = f"[{_fmt(lo)}, {_fmt(hi)}]" if np.isfinite(r["ci"]) else "—"
        lines.append(f"| {METRIC_TITLES.get(r['metric'], r['metric'])} | {_fmt(r['difference'])} | {interval} | {r['seeds']} |")
    return "\n".join(lines)


def write_report(folder: str | Path, *, lam: float | None = None) -> Path:
    """Write ``report.md``, ``table3.csv``, ``per_version.csv`` and the figures into ``folder``.

    ``folder`` is a benchmark folder, or a multi-seed one (``bcemb benchmark --seeds``): then
    every Table 3 cell and figure point is the mean over training seeds ± the half width of
    its 95% t-interval, and BC-Aligner is compared with Joint-Lin-SLoss seed by seed.
    ``lam`` is the lambda of Table 3 (None: the one the benchmark was run with).
    """
    folder = Path(folder)
    by_seed, meta = _load(folder)
    multi = "seeds" in meta
    if lam is None:
        lam = float(meta.get("config", {}).get("lam", 16.0))
    t3s = {s: table3(r) for s, r in by_seed.items()}
    if multi:
        t3 = over_seeds(t3s, ["method", "lam"], TABLE3_METRICS)
        pv = over_seeds({s: per_version(r) for s, r in by_seed.items()}, ["method", "lam", "version"],
                        ["intended", "unintended", "align_error", "recall"])
        pvm = over_seeds({s: per_version_means(r) for s, r in by_seed.items()}, ["method", "lam"],
                         ["intended", "unintended", "sum", "align_error"])
        rows = pd.concat([r.assign(run_seed=s) for s, r in by_seed.items()], ignore_index=True)
        paired = paired_comparison(t3s, "bc-aligner", "joint-lin-sloss", lam)
        atomic_write_bytes(folder / "paired.csv", paired.to_csv(index=False).encode())
    else:
        rows = by_seed[-1]
        t3, pv, pvm = t3s[-1], per_version(rows), per_version_means(rows)
    atomic_write_bytes(folder / "table3.csv", t3.to_csv(index=False).encode())
    atomic_write_bytes(folder / "per_version.csv", pv.to_csv(index=False).encode())
    atomic_write_bytes(folder / "per_version_means.csv", pvm.to_csv(index=False).encode())
    _figure3(pv, lam, folder / "figure3_metrics_over_time.png")
    _figure4(lam, folder / "figure4_tasks_bc_aligner.png", rows)
    has5 = _figure5(t3, folder / "figure5_lambda.png")
    cfg = meta.get("config", {})
    env = meta.get("environment", {})
    t3l = t3[t3["method"].isin(joint_methods())].sort_values(["method", "lam"])
    sweep_md = "\n".join(
        ["| method | lambda | (1) | (2) | (1)+(2) | (3) |", "|---|---|---|---|---|---|"]
        + [f"| {method_info(r.method).label} | {r.lam:g} | {_cell(r, 'intended')} | {_cell(r, 'unintended')} "
           f"| {_cell(r, 'sum')} | {_cell(r, 'align_error')} |" for _, r in t3l.iterrows()]
    )
    pvm_md = "\n".join(
        ["| method | (1) | (2) | (1)+(2) | (3) |", "|---|---|---|---|---|"]
        + [f"| {method_info(r.method).label} | {_cell(r, 'intended')} | {_cell(r, 'unintended')} | {_cell(r, 'sum')} "
           f"| {_cell(r, 'align_error')} |" for _, r in _default_rows(pvm, lam).iterrows() if r.method != KEEP_ALL]
    )
    ref = t3[t3["method"] == KEEP_ALL]
    seeds_line = (
        f"training seeds: {meta['seeds']} (each cell: mean ± half width of the 95% t-interval over seeds)"
        if multi else f"seed: {cfg.get('seed', '?')}"
    )
    paired_md = (
        f"""## BC-Aligner against Joint-Lin-SLoss, seed by seed (lambda = {lam:g})

Paired differences (BC-Aligner minus Joint-Lin-SLoss) of the Table 3 metrics over the training
seeds where both ran; an interval that excludes 0 separates the two methods at 95%. Higher is
better for (1), (2) and (1)+(2); lower is better for (3).

{_paired_md(paired)}
""" if multi else "_One training seed: run `bcemb benchmark --seeds 3` for intervals and the paired comparison._\n"
    )
    text = f"""# bcemb benchmark report

Dataset: `{cfg.get('dataset', '?')}` · profile: `{cfg.get('profile', '?')}` · {seeds_line} ·
sizes: {cfg.get('sizes', '?')} · consumer seeds: {cfg.get('consumer', {}).get('seeds', '?')} ·
bcemb {env.get('bcemb', '?')}, torch {env.get('torch', '?')}, PyG {env.get('torch_geometric', '?')}, git {str(env.get('git'))[:10]}

Keep-All absolute: Recall@50 {_cell(ref.iloc[0], 'recall', 100) if len(ref) else '—'},
ROC-AUC {_cell(ref.iloc[0], 'auc', 100) if len(ref) else '—'} (the paper, Musical Instruments: 12.13 and 68.66).

## Table 3 (lambda = {lam:g}; degradations in % relative to Keep-All)

As the paper computes it: Recall@50 averaged over versions 0..K, ROC-AUC averaged over each
task's test times and then over the five tasks (equal weights), alignment error averaged over
versions 0..K; the relative change is taken after averaging. Our numbers on the left; the
paper's Amazon Musical Instruments figures on the right, for reference only (another dataset
and, for the quick profile, smaller models trained for fewer epochs).

{_table_md(t3, lam)}

{paired_md}
## Figure 3: the three metrics over time

![Figure 3](figure3_metrics_over_time.png)

## Figure 4: each unintended task over time

![Figure 4](figure4_tasks_bc_aligner.png)

## Figure 5: lambda

{'![Figure 5](figure5_lambda.png)' if has5 else '_No lambda sweep in this run (pass `--lams 1,2,4,8,16,32`)._'}

{sweep_md}

## The other averaging order (per version, then averaged)

Relative changes taken at each version k >= 1 (per task and test time for (2)) and then
averaged; kept for comparison with earlier reports of this project.

{pvm_md}

Raw rows: `results.parquet` (method, lam, version, task, seed, metric, value); tables: `table3.csv`,
`per_version.csv`, `per_version_means.csv`{', `paired.csv`' if multi else ''}.
"""
    atomic_write_bytes(folder / "report.md", text.encode())
    return folder / "report.md"
