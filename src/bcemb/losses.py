"""Losses: BPR for the intended task and the two alignment losses of Hu et al. (KDD 2022)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bcemb.transforms.base import BackwardTransform

__all__ = [
    "bpr_loss",
    "bpr_loss_rows",
    "single_step_alignment",
    "multi_step_alignment",
    "multi_step_factor",
    "BATCH_ROLES",
    "ALIGNMENT_LOSSES",
    "PreparedAlignment",
    "prepare_alignment",
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
    # index_select, not rows[inverse]: see BPRObjective._rows (no sort in the backward)
    user, pos, neg = rows.index_select(0, inverse).view(3, batch, -1).unbind(0)
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
    if not previous:
        # k = 1: Q = I / D_{k-1}, the plain mean squared residual; no product needed.
        return _row_mean((transform(z_k) - z_prev).pow(2).mean(dim=1), weight)
    c = multi_step_factor(previous, z_prev)
    if transform.linear:
        # A linear B_k folds into C: delta C = z_k (W_k^T C) - z_{k-1} C, so only one
        # product over the rows carries a gradient.
        delta_c = z_k @ (transform.matrix().T @ c) - z_prev @ c
    else:
        delta_c = (transform(z_k) - z_prev) @ c
    return _row_mean(delta_c.pow(2).sum(dim=1), weight)


def multi_step_factor(previous: Sequence[BackwardTransform], like: Tensor) -> Tensor:
    r"""``C`` with ``C C^T = Q``, the quadratic form of the multi-step loss (linear older links).

    Each term of Eq. 8 is ``mean_x ||M_j delta||^2 / D_j`` with ``M_j = W_{j+1} ... W_{k-1}``
    fixed, so the loss is ``delta^T Q delta`` with ``Q = 1/k sum_j M_j^T M_j / D_j``, i.e.
    ``||delta C||^2`` (Cholesky; ``Q`` is positive definite as it holds ``I / D_{k-1}``): one
    ``[N, D] x [D, D]`` product instead of ``k-1`` chained ones. ``like`` gives the
    dimension ``D_{k-1}`` (its last axis), dtype and device.

    Shapes:
        -> ``[D_{k-1}, D_{k-1}]``.
    """
    d = like.shape[-1]
    m = torch.eye(d, dtype=like.dtype, device=like.device)
    q = m / d
    for older in reversed(previous):  # B_{k-1}, then B_{k-2}, ..., B_1
        m = older.matrix().detach().to(like) @ m
        q = q + m.T @ m / m.shape[0]
    return torch.linalg.cholesky(q / (len(previous) + 1))


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


class _WeightedSquaredResidual(torch.autograd.Function):
    """``sum_r w_r ||z_r A - t_r||^2``: one GEMM forward, two backward, three row passes.

    Autograd through ``(z @ A - t).pow(2).sum(1) * w`` keeps four ``[R, D]`` intermediates and
    runs about ten element-wise kernels; on a training step where the alignment's GEMMs are
    already a large share of the model's, those passes were most of what remained.
    """

    @staticmethod
    def forward(ctx, z: Tensor, a: Tensor, t: Tensor, w: Tensor) -> Tensor:  # noqa: ANN001
        r = torch.addmm(t, z, a, beta=-1)  # z A - t in the GEMM's own output pass
        rw = r * w.unsqueeze(1)
        ctx.save_for_backward(z, a, rw)
        return torch.dot(rw.view(-1), r.view(-1))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # noqa: ANN001
        z, a, rw = ctx.saved_tensors
        g2 = 2 * grad  # d/dr of w r.r is 2 w r; the factor goes on the small [D_k, D] side
        grad_z = rw @ (a * g2).T if ctx.needs_input_grad[0] else None
        grad_a = (z.T @ rw).mul_(g2) if ctx.needs_input_grad[1] else None
        return grad_z, grad_a, None, None


@dataclass
class PreparedAlignment:
    r"""An alignment loss of linear links with its parts fixed for a version computed once.

    Both losses are then ``scale * sum_r w_r ||z_r W_k^T C - (z_{k-1} C)_r||^2 / sum_r w_r``:
    the factor ``C`` of the multi-step form (:func:`multi_step_factor`; None: the identity)
    and the targets times ``C`` depend only on the frozen ``M_{k-1}`` and ``B_1 .. B_{k-1}``,
    so a step does one ``[R, D_k] x [D_k, D_{k-1}]`` product (and its two gradients) and a
    gather. Same value and gradients as the loss function, up to float rounding.

    Attributes:
        factor: ``C``. Shape ``[D_{k-1}, D_{k-1}]``; None for the identity.
        target: ``z_{k-1} C`` of every row. Shape ``[N, D_{k-1}]``.
        scale: The constant in front (``1 / D_{k-1}`` for a plain mean over coordinates).
    """

    factor: Tensor | None
    target: Tensor
    scale: float

    def __call__(
        self, z_k: Tensor, ids: Tensor | None, transform: BackwardTransform, weight: Tensor | None = None
    ) -> Tensor:
        """The loss of rows ``z_k`` (target rows ``ids``; all when None), weighted by ``weight``.

        Shapes:
            z_k: ``[R, D_k]``, ids: ``[R]``, weight: ``[R]`` -> scalar.
        """
        a = transform.matrix().T
        if self.factor is not None:
            a = a @ self.factor
        target = self.target if ids is None else self.target.index_select(0, ids)
        w = z_k.new_ones(z_k.shape[0]) if weight is None else weight.to(z_k.dtype)
        return _WeightedSquaredResidual.apply(z_k, a, target, w * (self.scale / w.sum()))


def _single_form(previous: Sequence[BackwardTransform], target: Tensor) -> tuple[Tensor | None, float]:
    return None, 1.0 / target.shape[1]


def _multi_form(previous: Sequence[BackwardTransform], target: Tensor) -> tuple[Tensor | None, float]:
    if not previous:  # k = 1: the single-step loss
        return _single_form(previous, target)
    return multi_step_factor(previous, target), 1.0


#: Loss function -> its quadratic form ``(C, scale)`` when every link is linear.
_QUADRATIC_FORMS: dict[Callable[..., Tensor], Callable[..., tuple[Tensor | None, float]]] = {
    single_step_alignment: _single_form,
    multi_step_alignment: _multi_form,
}


@torch.no_grad()
def prepare_alignment(
    loss: Callable[..., Tensor],
    target: Tensor,
    transform: BackwardTransform,
    previous: Sequence[BackwardTransform] = (),
) -> PreparedAlignment | None:
    """``loss`` with frozen ``target`` (``[N, D_{k-1}]``) and ``previous`` as a
    :class:`PreparedAlignment`; None when it has no such form (a non-linear link, another loss).
    """
    previous = list(previous)
    form = _QUADRATIC_FORMS.get(loss)
    if form is None or not transform.linear or not all(t.linear for t in previous):
        return None
    factor, scale = form(previous, target)
    target = target.detach()
    return PreparedAlignment(factor, target if factor is None else target @ factor, scale)

#: The node roles of a BPR batch: users, positive items, negative items (B rows each).
BATCH_ROLES = 3
