"""Linear backward transformation without bias (Post-Lin-*, Joint-Lin-*, BC-Aligner)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bcemb.transforms._lstsq import check_pair, ridge_solve
from bcemb.transforms.base import BackwardTransform

__all__ = ["LinearTransform"]


class LinearTransform(BackwardTransform):
    r"""``B_k(z) = W_k z`` with a learned ``W_k`` of shape ``[D_{k-1}, D_k]`` and no bias.

    No bias, because the multi-step loss pushes the residual ``B_k(z_k) - z_{k-1}`` through
    older transforms: that equals the chain's error only if every transform is linear.
    """

    kind = "linear"

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, out_dim)
        self.weight = nn.Parameter(nn.Linear(in_dim, out_dim, bias=False).weight.detach().clone())

    def reset_parameters(self) -> None:
        """Re-draw the weight with PyTorch's default ``nn.Linear`` initialisation."""
        self.weight.data.copy_(nn.Linear(self.in_dim, self.out_dim, bias=False).weight)

    def matrix(self) -> Tensor:
        """``W_k``. Shape ``[out_dim, in_dim]``."""
        return self.weight

    @torch.no_grad()
    def fit_closed_form(self, z_k: Tensor, z_prev: Tensor) -> None:
        r"""Least squares: ``W_k = argmin_W mean ||W z_k - z_{k-1}||^2`` (the single-step loss).

        Shapes:
            z_k: ``[N, in_dim]``, z_prev: ``[N, out_dim]``.
        """
        x, y = check_pair(z_k, z_prev, self.in_dim, self.out_dim)
        self.weight.copy_(ridge_solve(x, y).T.to(self.weight))
