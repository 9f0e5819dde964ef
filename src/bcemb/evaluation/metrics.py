"""Metrics: Recall@K for the intended task, ROC-AUC for the consumers, alignment error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

__all__ = ["recall_at_k", "roc_auc", "alignment_error", "relative_change"]


@torch.no_grad()
def recall_at_k(
    user_emb: Tensor,
    item_emb: Tensor,
    train_user: Tensor,
    train_item: Tensor,
    val_user: Tensor,
    val_item: Tensor,
    ks: Sequence[int] = (10, 20, 50, 100),
    *,
    chunk_size: int = 2048,
) -> dict[int, float]:
    r"""Mean Recall@K over users with validation edges, ranking all items by ``<u, i>``.

    Each user's training positives are excluded from the ranking; recall is
    ``|top-K ∩ val items| / |val items|``. Vectorised over chunks of users.

    Shapes:
        user_emb ``[U, D]``, item_emb ``[I, D]``; edge tensors ``[E]``.
    """
    n_items = item_emb.shape[0]
    kmax = min(max(ks), n_items)
    users = torch.unique(val_user)
    if users.numel() == 0:
        raise ValueError("no validation edges to evaluate Recall@K on")
    row_of = torch.full((user_emb.shape[0],), -1, dtype=torch.long, device=user_emb.device)
    totals = {k: 0.0 for k in ks}
    for start in range(0, users.numel(), chunk_size):
        chunk = users[start : start + chunk_size]
        row_of[chunk] = torch.arange(chunk.numel(), device=row_of.device)
        scores = user_emb[chunk] @ item_emb.T
        tr = row_of[train_user] >= 0
        scores[row_of[train_user[tr]], train_item[tr]] = -torch.inf
        top = scores.topk(kmax, dim=1).indices
        val = torch.zeros_like(scores, dtype=torch.bool)
        va = row_of[val_user] >= 0
        val[row_of[val_user[va]], val_item[va]] = True
        n_val = val.sum(1).clamp(min=1).double()
        hits = val.gather(1, top).double().cumsum(1)
        for k in ks:
            totals[k] += float((hits[:, min(k, kmax) - 1] / n_val).sum())
        row_of[chunk] = -1
    return {k: totals[k] / users.numel() for k in ks}


def roc_auc(label: np.ndarray | Tensor, score: np.ndarray | Tensor) -> float:
    """ROC-AUC from scikit-learn; NaN when only one class is present."""
    y = np.asarray(label.cpu() if isinstance(label, Tensor) else label)
    s = np.asarray(score.detach().cpu() if isinstance(score, Tensor) else score)
    if np.unique(y).size < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


@torch.no_grad()
def alignment_error(z_tilde: Tensor, z_true: Tensor) -> float:
    """Mean over nodes of the L2 distance ``||z~ - z||``.

    Shapes:
        z_tilde, z_true: ``[N, D]``.
    """
    if z_tilde.shape != z_true.shape:
        raise ValueError(f"shape mismatch: {tuple(z_tilde.shape)} vs {tuple(z_true.shape)}")
    return float((z_tilde - z_true).norm(dim=-1).mean())


def relative_change(value: float, reference: float) -> float:
    """``100 * (value - reference) / reference`` (the paper's degradation, in %)."""
    return 100.0 * (value - reference) / reference
