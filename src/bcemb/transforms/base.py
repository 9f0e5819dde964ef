"""The backward transformation interface: ``B_k`` maps ver-k embeddings into ver-(k-1) space."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BackwardTransform"]


class BackwardTransform(nn.Module, ABC):
    """A backward transformation ``B_k: R^{D_k} -> R^{D_{k-1}}``.

    Every transform here is linear without bias, so it is fully described by the matrix
    :meth:`matrix` of shape ``[out_dim, in_dim]`` and ``forward(z) = z @ matrix().T``. The
    multi-step loss and the cached chain rely on that linearity.

    Args:
        in_dim: ``D_k``.
        out_dim: ``D_{k-1}``.
    """

    kind: str = "base"

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"dimensions must be positive, got in={in_dim} out={out_dim}")
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)

    @abstractmethod
    def matrix(self) -> Tensor:
        """The transform as a matrix. Shape ``[out_dim, in_dim]``."""

    @property
    def trainable(self) -> bool:
        """Whether the transform has parameters to learn."""
        return any(p.requires_grad for p in self.parameters())

    def forward(self, z: Tensor) -> Tensor:
        """Map ver-k embeddings to ver-(k-1) space.

        Shapes:
            z: ``[N, in_dim]`` -> ``[N, out_dim]``.
        """
        if z.shape[-1] != self.in_dim:
            raise ValueError(
                f"{type(self).__name__} expects embeddings of dimension {self.in_dim}, "
                f"got {z.shape[-1]}"
            )
        return z @ self.matrix().T

    def to_config(self) -> dict[str, Any]:
        """A JSON-able description from which :func:`bcemb.transforms.build_transform` rebuilds it."""
        return {"kind": self.kind, "in_dim": self.in_dim, "out_dim": self.out_dim}

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}"

    @torch.no_grad()
    def frozen_copy(self) -> BackwardTransform:
        """A detached copy with gradients off (for older transforms in the multi-step loss)."""
        from bcemb.transforms import build_transform  # local: avoid an import cycle

        copy = build_transform(self.to_config())
        copy.load_state_dict(self.state_dict())
        copy.requires_grad_(False)
        return copy
