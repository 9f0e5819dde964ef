"""Least-squares helpers shared by the closed-form fits of the linear transform families."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_pair", "ridge_solve"]


def check_pair(z_k: Tensor, z_prev: Tensor, in_dim: int, out_dim: int) -> tuple[Tensor, Tensor]:
    """``z_k`` and ``z_prev`` as float64 after checking their shapes against a transform's dims.

    Shapes:
        z_k: ``[N, in_dim]``, z_prev: ``[N, out_dim]``.
    """
    if z_k.ndim != 2 or z_prev.ndim != 2 or z_k.shape[0] != z_prev.shape[0]:
        raise ValueError(
            f"need two [N, D] matrices with the same rows, got {tuple(z_k.shape)} and {tuple(z_prev.shape)}"
        )
    if z_k.shape[1] != in_dim or z_prev.shape[1] != out_dim:
        raise ValueError(
            f"the transform maps {in_dim} -> {out_dim} dimensions, got pairs of "
            f"{z_k.shape[1]} -> {z_prev.shape[1]}"
        )
    if z_k.shape[0] == 0:
        raise ValueError("no pairs to fit on")
    return z_k.detach().to(torch.float64), z_prev.detach().to(torch.float64)


def ridge_solve(x: Tensor, y: Tensor, *, ridge: float = 1e-6) -> Tensor:
    r"""``argmin_W ||x W - y||^2 + ridge * tr(x^T x) / D * ||W||^2`` in float64.

    The tiny ridge (relative to the mean eigenvalue of ``x^T x``) only keeps the normal
    equations solvable when ``x`` has fewer rows than columns or collinear ones.

    Shapes:
        x: ``[N, D_in]``, y: ``[N, D_out]`` -> ``[D_in, D_out]``.
    """
    gram = x.T @ x
    scale = float(torch.trace(gram)) / gram.shape[0] if gram.shape[0] else 1.0
    gram = gram + ridge * max(scale, 1e-12) * torch.eye(gram.shape[0], dtype=x.dtype, device=x.device)
    return torch.linalg.solve(gram, x.T @ y)
