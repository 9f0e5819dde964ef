"""From raw result rows to the paper's three metrics (PROTOCOL section 7, Table 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bcemb.evaluation.intervals import paired_difference, t_interval
from bcemb.evaluation.metrics import relative_change
from bcemb.methods import KEEP_ALL

__all__ = [
    "per_version", "per_version_means", "table3", "over_seeds", "paired_comparison", "TABLE3_METRICS",
    "PAPER_TABLE3", "KEEP_ALL",
]

#: The paper's Table 3 on Amazon Musical Instruments, in %, and the L2 alignment error.
PAPER_TABLE3: dict[str, tuple[float, float, float, float]] = {
    "fix-m0": (-26.81, -0.00, -26.81, 0.00),
    "finetune-m0": (-7.69, -7.46, -15.15, 1.01),
    "non-bc": (-0.00, -26.45, -26.45, 2.61),
    "post-lin-sloss": (-0.00, -10.25, -10.25, 1.27),
    "post-lin-mloss": (-0.00, -14.43, -14.43, 1.34),
    "joint-notrans": (-9.00, -0.80, -9.80, 0.41),
    "joint-lin-sloss": (-3.67, -1.07, -4.74, 0.48),
    "bc-aligner": (-2.96, -0.65, -3.62, 0.38),
}


def _key(rows: pd.DataFrame) -> pd.Series:
    return rows["lam"].fillna(-1.0)


def per_version(rows: pd.DataFrame, *, primary_k: int = 50) -> pd.DataFrame:
    """The three metrics of every (method, lam) at every version (including 0 when present).

    Columns: ``method, lam, version, intended, unintended, align_error`` plus
    ``unintended_<task>`` per task; degradations in % relative to Keep-All.
    """
    rows = rows.assign(lam_key=_key(rows))
    rec = rows[rows["metric"] == f"recall@{primary_k}"]
    ref_rec = rec[rec["method"] == KEEP_ALL].set_index("version")["value"]
    auc = (
        rows[rows["metric"] == "auc"]
        .groupby(["method", "lam_key", "task", "version"], as_index=False)["value"]
        .mean()
    )
    ref_auc = auc[auc["method"] == KEEP_ALL].set_index(["task", "version"])["value"]
    out = []
    for (method, lam_key), grp in rows.groupby(["method", "lam_key"]):
        lam = np.nan if lam_key < 0 else lam_key
        versions = sorted(grp["version"].unique())
        for k in versions:
            r = rec[(rec["method"] == method) & (rec["lam_key"] == lam_key) & (rec["version"] == k)]
            row = {"method": method, "lam": lam, "version": k}
            row["recall"] = float(r["value"].iloc[0]) if len(r) else np.nan
            row["intended"] = relative_change(row["recall"], float(ref_rec.get(k, np.nan))) if len(r) else np.nan
            a = auc[(auc["method"] == method) & (auc["lam_key"] == lam_key) & (auc["version"] == k)]
            changes = {}
            for _, ar in a.iterrows():
                changes[ar["task"]] = relative_change(ar["value"], float(ref_auc[(ar["task"], k)]))
                row[f"auc_{ar['task']}"] = ar["value"]
                row[f"unintended_{ar['task']}"] = changes[ar["task"]]
            row["unintended"] = float(np.mean(list(changes.values()))) if changes else np.nan
            e = grp[(grp["metric"] == "align_error") & (grp["version"] == k)]
            row["align_error"] = float(e["value"].iloc[0]) if len(e) else np.nan
            out.append(row)
    return pd.DataFrame(out)


def table3(rows: pd.DataFrame, *, primary_k: int = 50) -> pd.DataFrame:
    """Table 3 as the paper computes it: average first, then take the relative change.

    Per (method, lam): (1) the relative change of the mean Recall@K over versions ``0..K``
    against Keep-All's mean; (2) the relative change of the mean ROC-AUC against Keep-All's,
    where each task's AUC is first averaged over its test times and consumer seeds and the
    five tasks then weigh equally; (3) the mean alignment error over versions ``0..K``.
    (The paper's caption: "the relative degradation is computed after the average is taken
    across different timestamps and the five unintended tasks"; the reference's analysis
    notebook averages versions 0..4.) :func:`per_version_means` is the other order.
    """
    rows = rows.assign(lam_key=_key(rows))
    rec = rows[rows["metric"] == f"recall@{primary_k}"]
    auc = rows[rows["metric"] == "auc"]
    err = rows[rows["metric"] == "align_error"]

    def mean_recall(sub: pd.DataFrame) -> float:
        return float(sub.groupby("version")["value"].mean().mean()) if len(sub) else np.nan

    def mean_auc(sub: pd.DataFrame) -> float:
        # tasks weigh equally, whatever their number of test times
        return float(sub.groupby("task")["value"].mean().mean()) if len(sub) else np.nan

    ka_recall = mean_recall(rec[rec["method"] == KEEP_ALL])
    ka_auc = mean_auc(auc[auc["method"] == KEEP_ALL])
    out = []
    for (method, lam_key), _ in rows.groupby(["method", "lam_key"]):
        sel = (rows["method"] == method) & (rows["lam_key"] == lam_key)
        recall = mean_recall(rec[sel[rec.index]])
        mauc = mean_auc(auc[sel[auc.index]])
        intended = relative_change(recall, ka_recall)
        unintended = relative_change(mauc, ka_auc)
        e = err[sel[err.index]]
        out.append({
            "method": method,
            "lam": np.nan if lam_key < 0 else lam_key,
            "intended": intended,
            "unintended": unintended,
            "sum": intended + unintended,
            "align_error": float(e.groupby("version")["value"].mean().mean()) if len(e) else np.nan,
            "recall": recall,
            "auc": mauc,
        })
    return pd.DataFrame(out)


def per_version_means(rows: pd.DataFrame, *, primary_k: int = 50) -> pd.DataFrame:
    """The other averaging order, kept as a separate view: relative changes per version
    (versions ``k >= 1``; per (task, time) pair for the unintended one), then their means."""
    pv = per_version(rows, primary_k=primary_k)
    pv = pv[pv["version"] >= 1]
    unint_cols = [c for c in pv.columns if c.startswith("unintended_")]
    out = []
    for (method, lam), grp in pv.groupby(["method", pv["lam"].fillna(-1.0)]):
        pairs = grp[unint_cols].to_numpy().ravel()
        pairs = pairs[np.isfinite(pairs)]
        intended = float(grp["intended"].mean())
        unintended = float(pairs.mean()) if pairs.size else np.nan
        out.append({
            "method": method,
            "lam": np.nan if lam < 0 else lam,
            "intended": intended,
            "unintended": unintended,
            "sum": intended + unintended,
            "align_error": float(grp["align_error"].mean()),
        })
    return pd.DataFrame(out)


#: The columns of :func:`table3` that get a confidence interval over seeds.
TABLE3_METRICS = ("intended", "unintended", "sum", "align_error", "recall", "auc")


def over_seeds(frames: dict[int, pd.DataFrame], keys: list[str], metrics: tuple[str, ...] | list[str],
               *, level: float = 0.95) -> pd.DataFrame:
    """Mean and t-interval half width (``<metric>_ci``) of each metric over seeds, per ``keys``.

    ``frames`` maps a training seed to a frame (e.g. its :func:`table3`); rows are matched on
    ``keys`` (``lam`` NaN matches NaN). Adds ``seeds``, the number of seeds a row has.
    """
    both = pd.concat([f.assign(run_seed=s) for s, f in frames.items()], ignore_index=True)
    both = both.assign(_lam=both["lam"].fillna(-1.0)) if "lam" in keys else both
    group = ["_lam" if k == "lam" else k for k in keys]
    out = []
    for key, grp in both.groupby(group, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {k: (np.nan if k == "lam" and v < 0 else v) for k, v in zip(keys, key, strict=True)}
        for m in metrics:
            if m not in grp:
                continue
            mean, half, n = t_interval(grp[m].to_numpy(), level=level)
            row[m], row[f"{m}_ci"] = mean, half
        row["seeds"] = int(grp["run_seed"].nunique())
        out.append(row)
    return pd.DataFrame(out)


def paired_comparison(
    tables: dict[int, pd.DataFrame], a: str, b: str, lam: float, *, level: float = 0.95,
    metrics: tuple[str, ...] = ("intended", "unintended", "sum", "align_error"),
) -> pd.DataFrame:
    """``a - b`` per metric over the seeds where both ran, with its paired t-interval.

    ``tables`` maps a training seed to its :func:`table3`. Lower alignment error and higher
    (less negative) degradations are better.
    """
    pairs = []
    for seed, t in tables.items():
        ra = t[(t["method"] == a) & (t["lam"] == lam)]
        rb = t[(t["method"] == b) & (t["lam"] == lam)]
        if len(ra) and len(rb):
            pairs.append((seed, ra.iloc[0], rb.iloc[0]))
    rows = []
    for m in metrics:
        va = np.array([p[1][m] for p in pairs], dtype=float)
        vb = np.array([p[2][m] for p in pairs], dtype=float)
        mean, half, n = paired_difference(va, vb, level=level)
        rows.append({"metric": m, "difference": mean, "ci": half, "seeds": n})
    return pd.DataFrame(rows)
