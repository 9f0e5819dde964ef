"""The parameter-free transform: keep the first ``D_{k-1}`` coordinates (Non-BC, Joint-NoTrans)."""

from __future__ import annotations

import torch
from torch import Tensor

from bcemb.transforms.base import BackwardTransform

__all__ = ["TruncateTransform"]


class TruncateTransform(BackwardTransform):
    """``B_k(z) = z[:, :D_{k-1}]``; the identity when the dimensions are equal.

    Requires ``out_dim <= in_dim`` (a truncation cannot add coordinates).
    """

    kind = "truncate"

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, out_dim)
        if out_dim > in_dim:
            raise ValueError(f"cannot truncate {in_dim} coordinates to {out_dim}")
        self.register_buffer("_eye", torch.eye(out_dim, in_dim), persistent=False)

    def matrix(self) -> Tensor:
        """``[I | 0]``. Shape ``[out_dim, in_dim]``."""
        return self._eye

    def forward(self, z: Tensor) -> Tensor:
        """Slice instead of a matrix product (same result, no FLOPs)."""
        if z.shape[-1] != self.in_dim:
            raise ValueError(f"expected dimension {self.in_dim}, got {z.shape[-1]}")
        return z[..., : self.out_dim]
