"""From raw result rows to the paper's three metrics (PROTOCOL section 7, Table 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bcemb.evaluation.metrics import relative_change
from bcemb.methods import KEEP_ALL

__all__ = ["per_version", "table3", "PAPER_TABLE3", "KEEP_ALL"]

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
    """The three metrics of every (method, lam) at every version ``k >= 1``.

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
        versions = sorted(v for v in grp["version"].unique() if v >= 1)
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
    """Table 3: per (method, lam) the averages over versions of the three metrics.

    The unintended degradation averages the relative AUC change over every (task, test time)
    pair, as the paper does; the intended one and the alignment error average over versions
    ``k >= 1`` (version 0 is the same model for every method).
    """
    pv = per_version(rows, primary_k=primary_k)
    # Unintended: mean over (task, time) pairs, not over versions of per-version means.
    unint_cols = [c for c in pv.columns if c.startswith("unintended_")]
    out = []
    for (method, lam), grp in pv.groupby(["method", pv["lam"].fillna(-1.0)]):
        pairs = grp[unint_cols].to_numpy().ravel()
        pairs = pairs[np.isfinite(pairs)]
        intended = float(grp["intended"].mean())
        unintended = float(pairs.mean()) if pairs.size else np.nan
        aucs = grp[[c for c in grp.columns if c.startswith("auc_")]].to_numpy().ravel()
        out.append({
            "method": method,
            "lam": np.nan if lam < 0 else lam,
            "intended": intended,
            "unintended": unintended,
            "sum": intended + unintended,
            "align_error": float(grp["align_error"].mean()),
            "recall": float(grp["recall"].mean()),
            "auc": float(np.nanmean(aucs)) if aucs.size else np.nan,
        })
    return pd.DataFrame(out)
