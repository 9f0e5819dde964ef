"""Post-hoc fitting of any backward transform on pairs of frozen embeddings."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from bcemb.transforms._lstsq import check_pair, ridge_solve
from bcemb.transforms.base import BackwardTransform

logger = logging.getLogger(__name__)

__all__ = ["FitReport", "fit_transform"]


@dataclass(frozen=True)
class FitReport:
    """How a post-hoc fit went.

    Attributes:
        method: ``"closed-form"`` or ``"adam"``.
        steps: Optimiser steps run (0 for the closed form).
        train_mse: Mean squared error per coordinate on the fitting pairs.
        val_mse: The same on the early-stopping pairs (None for the closed form).
    """

    method: str
    steps: int
    train_mse: float
    val_mse: float | None = None


def _mse(transform: BackwardTransform, z_k: Tensor, z_prev: Tensor) -> float:
    with torch.no_grad():
        return float((transform(z_k) - z_prev).pow(2).mean())


def fit_transform(
    transform: BackwardTransform,
    z_k: Tensor,
    z_prev: Tensor,
    *,
    closed_form: bool = True,
    steps: int = 3000,
    lr: float = 3e-3,
    batch_size: int = 4096,
    weight_decay: float = 1e-4,
    val_fraction: float = 0.1,
    patience: int = 10,
    seed: int = 0,
) -> FitReport:
    r"""Fit ``B_k`` so that ``B_k(z_k) ~ z_{k-1}`` (the single-step loss) on frozen pairs.

    Uses the family's ``fit_closed_form`` when it has one and ``closed_form`` is True.
    Otherwise Adam on mini-batches, keeping the state with the best error on a held-out
    ``val_fraction`` of the pairs (checked every 50 steps, stopping after ``patience`` checks
    without improvement): the non-linear family can overfit small samples. A transform with a
    linear skip (``init_linear_part``) starts from the least-squares map.

    Args:
        transform: The transform to fit, in place.
        z_k: New vectors. Shape ``[N, in_dim]``.
        z_prev: Old vectors of the same rows. Shape ``[N, out_dim]``.
        closed_form: Use the closed form when the family has one.
        steps: Most Adam steps.
        lr: Adam learning rate.
        batch_size: Rows per step.
        weight_decay: Adam weight decay.
        val_fraction: Share of the pairs held out for early stopping.
        patience: Checks without improvement before stopping.
        seed: Seed of the split and of the batches.

    Returns:
        What was done and the errors reached.
    """
    x, y = check_pair(z_k, z_prev, transform.in_dim, transform.out_dim)
    dtype = next((p.dtype for p in transform.parameters()), torch.float32)
    fit = getattr(transform, "fit_closed_form", None)
    if closed_form and fit is not None:
        fit(z_k, z_prev)
        return FitReport("closed-form", 0, _mse(transform, z_k.to(dtype), z_prev.to(dtype)))
    if not transform.trainable:
        return FitReport("none", 0, _mse(transform, z_k.to(dtype), z_prev.to(dtype)))
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    perm = torch.randperm(n, generator=gen)
    n_val = int(round(n * val_fraction)) if n >= 20 else 0
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    xs, ys = x.to(dtype), y.to(dtype)
    x_tr, y_tr, x_va, y_va = xs[tr_idx], ys[tr_idx], xs[val_idx], ys[val_idx]
    init = getattr(transform, "init_linear_part", None)
    if init is not None:
        init(ridge_solve(x[tr_idx], y[tr_idx]).T)
    transform.requires_grad_(True)
    opt = torch.optim.Adam(transform.parameters(), lr=lr, weight_decay=weight_decay)
    check = x_va if n_val else x_tr
    check_y = y_va if n_val else y_tr
    best, best_state, bad, step = _mse(transform, check, check_y), copy.deepcopy(transform.state_dict()), 0, 0
    for step in range(1, steps + 1):
        b = torch.randint(0, x_tr.shape[0], (min(batch_size, x_tr.shape[0]),), generator=gen)
        loss = (transform(x_tr[b]) - y_tr[b]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            cur = _mse(transform, check, check_y)
            if cur < best * (1 - 1e-4):
                best, best_state, bad = cur, copy.deepcopy(transform.state_dict()), 0
            else:
                bad += 1
                if bad >= patience:
                    break
    transform.load_state_dict(best_state)
    transform.requires_grad_(False)
    report = FitReport("adam", step, _mse(transform, x_tr, y_tr), best if n_val else None)
    logger.info("fitted %s with Adam: %d steps, train MSE %.4g, val MSE %s", transform.kind,
                report.steps, report.train_mse, report.val_mse)
    return report
