"""Low-rank plus identity-padding backward transformation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from bcemb.transforms._lstsq import check_pair, ridge_solve
from bcemb.transforms.base import BackwardTransform

__all__ = ["LowRankTransform"]


class LowRankTransform(BackwardTransform):
    r"""``B_k(z) = E z + U (V z)``: identity padding plus a rank-``r`` correction.

    ``E = [I | 0]`` keeps the first ``D_{k-1}`` coordinates (or pads with zeros when
    ``D_{k-1} > D_k``), ``U`` is ``[D_{k-1}, r]`` and ``V`` is ``[r, D_k]``. It stores
    ``r (D_k + D_{k-1})`` numbers instead of ``D_k D_{k-1}`` and, with ``U = 0`` at
    initialisation, starts as Joint-NoTrans's truncation: the new model is pushed to keep the
    old coordinates and the low-rank part absorbs what has to move.

    Args:
        in_dim: ``D_k``.
        out_dim: ``D_{k-1}``.
        rank: ``r`` (capped at ``min(D_k, D_{k-1})``; default 16).

    Shapes:
        z: ``[N, in_dim]`` -> ``[N, out_dim]``.
    """

    kind = "low-rank"

    def __init__(self, in_dim: int, out_dim: int, rank: int = 16) -> None:
        super().__init__(in_dim, out_dim)
        if int(rank) <= 0:
            raise ValueError(f"rank must be positive, got {rank}")
        self.rank = min(int(rank), in_dim, out_dim)
        self.register_buffer("_eye", torch.eye(out_dim, in_dim), persistent=False)
        self.u = nn.Parameter(torch.zeros(out_dim, self.rank))
        self.v = nn.Parameter(torch.empty(self.rank, in_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``U = 0`` (start at the truncation), ``V`` with ``nn.Linear``'s initialisation."""
        with torch.no_grad():
            self.u.zero_()
            self.v.copy_(nn.Linear(self.in_dim, self.rank, bias=False).weight)

    def matrix(self) -> Tensor:
        """``E + U V``. Shape ``[out_dim, in_dim]``."""
        return self._eye + self.u @ self.v

    def forward(self, z: Tensor) -> Tensor:
        """Slice plus two thin products (cheaper than the dense matrix for small ``r``)."""
        self._check_input(z)
        base = z[..., : self.out_dim]
        if self.out_dim > self.in_dim:
            base = torch.nn.functional.pad(base, (0, self.out_dim - self.in_dim))
        return base + (z @ self.v.T) @ self.u.T

    def to_config(self) -> dict[str, Any]:
        """Kind, dimensions and ``rank``."""
        return {**super().to_config(), "rank": self.rank}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}"

    @torch.no_grad()
    def fit_closed_form(self, z_k: Tensor, z_prev: Tensor) -> None:
        r"""Reduced-rank regression of the residual ``z_{k-1} - E z_k`` on ``z_k``.

        The least-squares map ``W`` of the residual is projected on the top-``r`` principal
        directions ``P_r`` of its fitted values ``z_k W``: ``U V = P_r W^T`` is the best
        rank-``r`` correction in the least-squares sense.

        Shapes:
            z_k: ``[N, in_dim]``, z_prev: ``[N, out_dim]``.
        """
        x, y = check_pair(z_k, z_prev, self.in_dim, self.out_dim)
        residual = y - x @ self._eye.to(x).T
        w = ridge_solve(x, residual)  # [in, out]
        _, _, vh = torch.linalg.svd(x @ w, full_matrices=False)
        basis = vh[: self.rank]  # [r, out]
        self.u.copy_(basis.T.to(self.u))
        self.v.copy_((basis @ w.T).to(self.v))
