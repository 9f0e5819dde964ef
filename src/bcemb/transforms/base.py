"""The backward transformation interface: ``B_k`` maps ver-k embeddings into ver-(k-1) space."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BackwardTransform"]


class BackwardTransform(nn.Module, ABC):
    """A backward transformation ``B_k: R^{D_k} -> R^{D_{k-1}}``.

    A *linear* transform (``linear`` is True) has no bias, so it is fully described by the
    matrix :meth:`matrix` of shape ``[out_dim, in_dim]`` and ``forward(z) = z @ matrix().T``;
    chains compose runs of linear transforms into one matrix and the multi-step loss pushes
    residuals through them. A non-linear transform (the residual MLP) overrides
    :meth:`forward`, raises in :meth:`matrix` and is applied step by step.

    Families with a closed-form post-hoc fit of the single-step loss also define
    ``fit_closed_form(z_k, z_prev)``; the others are fitted with Adam
    (:func:`bcemb.transforms.fit.fit_transform`).

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
        """The transform as a matrix. Shape ``[out_dim, in_dim]``.

        Raises:
            TypeError: The transform is not linear.
        """

    @property
    def linear(self) -> bool:
        """Whether ``forward(z) == z @ matrix().T`` (so chains may compose it into one matrix)."""
        return True

    @property
    def trainable(self) -> bool:
        """Whether the transform has parameters to learn."""
        return any(p.requires_grad for p in self.parameters())

    def forward(self, z: Tensor) -> Tensor:
        """Map ver-k embeddings to ver-(k-1) space.

        Shapes:
            z: ``[N, in_dim]`` -> ``[N, out_dim]``.
        """
        self._check_input(z)
        return z @ self.matrix().T

    def to_config(self) -> dict[str, Any]:
        """A JSON-able description from which :func:`bcemb.transforms.build_transform` rebuilds it.

        Families with hyperparameters (a rank, a hidden size) add them as extra keys; they are
        passed back to the constructor as keyword arguments.
        """
        return {"kind": self.kind, "in_dim": self.in_dim, "out_dim": self.out_dim}

    def _check_input(self, z: Tensor) -> None:
        if z.shape[-1] != self.in_dim:
            raise ValueError(
                f"{type(self).__name__} expects embeddings of dimension {self.in_dim}, "
                f"got {z.shape[-1]}"
            )

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
