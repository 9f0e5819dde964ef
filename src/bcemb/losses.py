"""Losses: BPR for the intended task and the two alignment losses of Hu et al. (KDD 2022)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from bcemb.transforms.base import BackwardTransform

__all__ = [
    "bpr_loss",
    "bpr_loss_rows",
    "single_step_alignment",
    "multi_step_alignment",
    "BATCH_ROLES",
    "ALIGNMENT_LOSSES",
]


def bpr_loss(
    user: Tensor, pos: Tensor, neg: Tensor, *, weight_decay: float = 0.01
) -> Tensor:
    r"""Bayesian personalised ranking with weight decay on the batch embeddings.

    ``mean softplus(<u, i-> - <u, i+>) + wd * (||u||^2 + ||i+||^2 + ||i-||^2) / (2 B)``.

    Shapes:
        user, pos, neg: ``[B, D]`` -> scalar.
    """
    pos_score = (user * pos).sum(-1)
    neg_score = (user * neg).sum(-1)
    rank = F.softplus(neg_score - pos_score).mean()
    reg = (user.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / (2 * user.shape[0])
    return rank + weight_decay * reg


def bpr_loss_rows(
    rows: Tensor, inverse: Tensor, counts: Tensor, batch: int, *, weight_decay: float = 0.01
) -> Tensor:
    """:func:`bpr_loss` of a batch given by its distinct rows.

    ``rows[inverse]`` are the batch's user, positive and negative embeddings stacked
    (``3 * batch`` rows) and ``counts`` each distinct row's multiplicity, so the weight decay
    is a weighted sum over distinct rows.

    Shapes:
        rows: ``[R, D]``, inverse: ``[3 * batch]``, counts: ``[R]`` -> scalar.
    """
    user, pos, neg = rows[inverse].view(3, batch, -1).unbind(0)
    rank = F.softplus((user * (neg - pos)).sum(-1)).mean()
    reg = (counts.to(rows.dtype) * rows.square().sum(-1)).sum() / (2 * batch)
    return rank + weight_decay * reg


def _row_mean(row_loss: Tensor, weight: Tensor | None) -> Tensor:
    # A weighted mean over distinct nodes equals the plain mean over batch rows when the
    # weights are the nodes' multiplicities in the batch (the trainer uses this).
    if weight is None:
        return row_loss.mean()
    return (row_loss * weight).sum() / weight.sum()


def single_step_alignment(
    z_k: Tensor,
    z_prev: Tensor,
    transform: BackwardTransform,
    previous: Sequence[BackwardTransform] = (),
    weight: Tensor | None = None,
) -> Tensor:
    r"""``mean_x ||B_k(z_k) - z_{k-1}||^2`` (mean over coordinates, as the reference code).

    ``previous`` is accepted and ignored so both losses share one signature; ``weight``
    (optional, ``[N]``) weights the rows.

    Shapes:
        z_k: ``[N, D_k]``, z_prev: ``[N, D_{k-1}]`` -> scalar.
    """
    return _row_mean((transform(z_k) - z_prev).pow(2).mean(dim=1), weight)


def multi_step_alignment(
    z_k: Tensor,
    z_prev: Tensor,
    transform: BackwardTransform,
    previous: Sequence[BackwardTransform] = (),
    weight: Tensor | None = None,
) -> Tensor:
    r"""BC-Aligner's multi-step loss (Eq. 8 of the paper).

    With ``delta = B_k(z_k) - z_{k-1}`` and the frozen older transforms ``B_1 .. B_{k-1}``
    (``previous``, oldest first):
    ``1/k * sum_{j=0}^{k-1} MSE(W_{j+1} ... W_{k-1} delta, 0)``; the ``j = k-1`` term is
    ``delta`` itself. Pushing the residual through the maps equals the chain's error at
    version ``j`` because every transform is linear without bias (the bias would cancel).
    When an older link is non-linear (the residual MLP family) that shortcut does not hold,
    and ``B_k(z_k)`` and ``z_{k-1}`` are pushed through the older links separately.

    Shapes:
        z_k: ``[N, D_k]``, z_prev: ``[N, D_{k-1}]`` -> scalar.
    """
    previous = list(previous)
    if not all(t.linear for t in previous):
        return _multi_step_explicit(transform(z_k), z_prev, previous, weight)
    d = z_prev.shape[1]
    if not previous:
        # k = 1: Q = I / D_{k-1}, the plain mean squared residual; no product needed.
        return _row_mean((transform(z_k) - z_prev).pow(2).mean(dim=1), weight)
    # Each term is mean_x ||M_j delta||^2 / D_j with M_j = W_{j+1} ... W_{k-1} fixed, so the
    # sum is the quadratic form delta^T Q delta with Q = 1/k sum_j M_j^T M_j / D_j = C C^T
    # (Cholesky; Q is positive definite as it holds I / D_{k-1}), i.e. ||delta C||^2: one
    # [N, D] x [D, D] product instead of k-1 chained ones over the batch.
    m = torch.eye(d, dtype=z_prev.dtype, device=z_prev.device)
    q = m / d
    for older in reversed(previous):  # B_{k-1}, then B_{k-2}, ..., B_1
        m = older.matrix().detach().to(z_prev) @ m
        q = q + m.T @ m / m.shape[0]
    c = torch.linalg.cholesky(q / (len(previous) + 1))
    if transform.linear:
        # A linear B_k folds into C: delta C = z_k (W_k^T C) - z_{k-1} C, so only one
        # product over the rows carries a gradient.
        delta_c = z_k @ (transform.matrix().T @ c) - z_prev @ c
    else:
        delta_c = (transform(z_k) - z_prev) @ c
    return _row_mean(delta_c.pow(2).sum(dim=1), weight)


def _multi_step_explicit(
    approx: Tensor, z_prev: Tensor, previous: Sequence[BackwardTransform], weight: Tensor | None
) -> Tensor:
    """The multi-step loss with the chain applied to both sides (any older links)."""
    total = (approx - z_prev).pow(2).mean(dim=1)
    for older in reversed(previous):  # B_{k-1}, then B_{k-2}, ..., B_1
        approx, z_prev = older(approx), older(z_prev).detach()
        total = total + (approx - z_prev).pow(2).mean(dim=1)
    return _row_mean(total / (len(previous) + 1), weight)


ALIGNMENT_LOSSES = {"single": single_step_alignment, "multi": multi_step_alignment}

#: The node roles of a BPR batch: users, positive items, negative items (B rows each).
BATCH_ROLES = 3
