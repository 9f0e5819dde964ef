"""Alignment error along a chain of backward transformations, for every pair of versions.

For versions ``j < k`` the error is the mean over the nodes of the graph at ``t_k`` of
``||B_{j+1} o ... o B_k (z_k) - z_j||`` with ``z_i = M_i`` applied to that graph: how far a
ver-``j`` consumer's input drifts when it is served from ``M_k`` through ``k - j`` hops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from bcemb.evaluation.intervals import t_interval  # noqa: E402
from bcemb.methods.base import VersionArtifact  # noqa: E402
from bcemb.models.graph_input import GraphInput  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["chain_errors", "errors_frame", "hop_summary", "plot_heatmaps", "plot_hops"]


@torch.no_grad()
def chain_errors(versions: Sequence[VersionArtifact], graph_at: Callable[[int], GraphInput]) -> np.ndarray:
    """``err[j, k]`` for ``j < k`` (NaN elsewhere), on the graph at ``t_k``.

    Args:
        versions: ``M_0..M_K`` with ``B_1..B_K`` of one method (``versions[k].transform`` is
            ``B_k``).
        graph_at: Version ``k`` -> the graph at ``t_k`` (nodes present by ``t_{k+1}``).
    """
    n = len(versions)
    err = np.full((n, n), np.nan)
    for k in range(1, n):
        graph = graph_at(k)
        z = torch.cat(versions[k].model.eval()(graph))
        for j in range(k - 1, -1, -1):
            transform = versions[j + 1].transform
            if transform is None:
                raise ValueError(f"version {j + 1} has no backward transformation")
            z = transform(z)
            z_j = torch.cat(versions[j].model.eval()(graph))
            err[j, k] = float((z - z_j).norm(dim=1).mean())
    return err


def errors_frame(err: np.ndarray, **labels: object) -> pd.DataFrame:
    """Long form ``(j, k, hops, error, **labels)`` of the finite entries of ``err``."""
    j, k = np.nonzero(np.isfinite(err))
    return pd.DataFrame({**labels, "j": j, "k": k, "hops": k - j, "error": err[j, k]})


def hop_summary(frame: pd.DataFrame, *, level: float = 0.95) -> pd.DataFrame:
    """Per method and hop count: mean error over pairs per seed, then mean and t-interval over seeds."""
    per_seed = frame.groupby(["method", "seed", "hops"], as_index=False)["error"].mean()
    rows = []
    for (method, hops), grp in per_seed.groupby(["method", "hops"]):
        mean, half, n = t_interval(grp["error"].to_numpy(), level=level)
        rows.append({"method": method, "hops": int(hops), "error": mean, "ci": half, "seeds": n})
    return pd.DataFrame(rows)


def plot_heatmaps(frame: pd.DataFrame, path: str | Path, *, labels: dict[str, str] | None = None) -> Path:
    """One heat map per method of the seed-mean error of every pair ``(j, k)``."""
    methods = list(dict.fromkeys(frame["method"]))
    mean = frame.groupby(["method", "j", "k"], as_index=False)["error"].mean()
    n = int(frame["k"].max()) + 1
    vmax = float(mean["error"].max())
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.8), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        grid = np.full((n, n), np.nan)
        sub = mean[mean["method"] == method]
        grid[sub["j"], sub["k"]] = sub["error"]
        im = ax.imshow(grid, vmin=0, vmax=vmax, cmap="viridis", origin="upper")
        ax.set_title((labels or {}).get(method, method))
        ax.set_xlabel("k (serving version)")
        ax.set_ylabel("j (consumer's version)")
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
    fig.colorbar(im, ax=axes[0].tolist(), label="mean L2 error")
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_hops(summary: pd.DataFrame, path: str | Path, *, labels: dict[str, str] | None = None) -> Path:
    """Error against the number of hops ``k - j``, mean and 95% t-interval over seeds."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method, grp in summary.groupby("method", sort=False):
        grp = grp.sort_values("hops")
        ax.errorbar(grp["hops"], grp["error"], yerr=grp["ci"].fillna(0.0), marker="o", capsize=3,
                    label=(labels or {}).get(method, method))
    ax.set_xlabel("hops k - j")
    ax.set_ylabel("alignment error (mean L2)")
    ax.legend()
    ax.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
