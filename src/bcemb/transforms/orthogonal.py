"""Orthogonal (Procrustes) backward transformation: a rotation, or a semi-orthogonal map."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal

from bcemb.transforms._lstsq import check_pair
from bcemb.transforms.base import BackwardTransform

__all__ = ["OrthogonalTransform"]


class OrthogonalTransform(BackwardTransform):
    r"""``B_k(z) = Q_k z`` with ``Q_k`` (semi-)orthogonal, shape ``[D_{k-1}, D_k]``.

    ``Q Q^T = I`` when ``D_{k-1} <= D_k`` (an isometry onto the old space followed by a
    projection) and ``Q^T Q = I`` when ``D_{k-1} > D_k`` (an isometric embedding into the
    larger old space). It keeps norms and angles, so it cannot amplify the error of an older
    link, but it cannot fix a change of scale either.

    Trained jointly through PyTorch's orthogonal parametrisation; post hoc with the closed
    form of the orthogonal Procrustes problem (:meth:`fit_closed_form`).

    Shapes:
        z: ``[N, in_dim]`` -> ``[N, out_dim]``.

    Example:
        >>> b = OrthogonalTransform(384, 320)
        >>> b.fit_closed_form(z_new, z_old)  # Q = U V^T from the SVD of z_old^T z_new
    """

    kind = "orthogonal"

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, out_dim)
        self.linear_map = orthogonal(nn.Linear(in_dim, out_dim, bias=False))

    def reset_parameters(self) -> None:
        """Draw a fresh random semi-orthogonal ``Q``."""
        with torch.no_grad():
            self.linear_map.weight = _semi_orthogonal(torch.randn(self.out_dim, self.in_dim))

    def matrix(self) -> Tensor:
        """``Q_k``. Shape ``[out_dim, in_dim]``."""
        return self.linear_map.weight

    @torch.no_grad()
    def fit_closed_form(self, z_k: Tensor, z_prev: Tensor, *, iterations: int = 500) -> None:
        r"""Orthogonal Procrustes: ``Q = argmin_{Q semi-orthogonal} ||z_k Q^T - z_{k-1}||_F``.

        With ``z_{k-1}^T z_k = U S V^T`` (thin SVD), ``Q = U V^T``: the exact solution when
        ``D_{k-1} >= D_k`` (then ``||z_k Q^T||`` does not depend on ``Q``). When the old space
        is smaller, ``||z_k Q^T||`` depends on ``Q`` and there is no closed form; ``U V^T``
        is then the start of Kiers' (1990) majorisation, ``Q <- polar(C + Q (a I - G))`` with
        ``C = z_{k-1}^T z_k``, ``G = z_k^T z_k`` and ``a`` its largest eigenvalue, which never
        increases the error (``iterations`` at most).

        Shapes:
            z_k: ``[N, in_dim]``, z_prev: ``[N, out_dim]``.
        """
        x, y = check_pair(z_k, z_prev, self.in_dim, self.out_dim)
        cross = y.T @ x  # [out, in]
        q = _semi_orthogonal(cross)
        if self.out_dim < self.in_dim:
            gram = x.T @ x
            shifted = float(torch.linalg.eigvalsh(gram)[-1]) * torch.eye(self.in_dim, dtype=x.dtype) - gram
            last = float("inf")
            for _ in range(iterations):
                q = _semi_orthogonal(cross + q @ shifted)
                err = float(torch.trace(q @ gram @ q.T) - 2 * torch.trace(q @ cross.T))
                if last - err <= 1e-10 * max(abs(err), 1.0):
                    break
                last = err
        self.linear_map.weight = q.to(self.linear_map.weight)


def _semi_orthogonal(a: Tensor) -> Tensor:
    u, _, vh = torch.linalg.svd(a, full_matrices=False)
    return u @ vh
