"""A small residual MLP: the non-linear backward transformation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from bcemb.transforms.base import BackwardTransform

__all__ = ["ResidualMLPTransform"]


class ResidualMLPTransform(BackwardTransform):
    r"""``B_k(z) = W z + U \mathrm{GELU}(V z + b)``: a linear map plus a one-hidden-layer MLP.

    The paper leaves non-linear ``B_k`` open. The linear skip ``W`` (no bias) carries what a
    linear map can do, and ``U`` starts at zero so the transform starts linear. Being
    non-linear, it has no matrix: chains apply it step by step, and the multi-step loss
    pushes ``B_k(z_k)`` and ``z_{k-1}`` through the older links separately instead of their
    difference.

    Args:
        in_dim: ``D_k``.
        out_dim: ``D_{k-1}``.
        hidden: Width of the hidden layer (default 128).

    Shapes:
        z: ``[N, in_dim]`` -> ``[N, out_dim]``.
    """

    kind = "mlp"

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128) -> None:
        super().__init__(in_dim, out_dim)
        if int(hidden) <= 0:
            raise ValueError(f"hidden must be positive, got {hidden}")
        self.hidden = int(hidden)
        self.skip = nn.Linear(in_dim, out_dim, bias=False)
        self.up = nn.Linear(in_dim, self.hidden)
        self.down = nn.Linear(self.hidden, out_dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default ``nn.Linear`` initialisation, with ``U = 0`` (start linear)."""
        self.skip.reset_parameters()
        self.up.reset_parameters()
        nn.init.zeros_(self.down.weight)

    @property
    def linear(self) -> bool:
        """Always False."""
        return False

    def matrix(self) -> Tensor:
        """Not defined: the transform is non-linear."""
        raise TypeError(
            "the residual MLP transform is non-linear and has no matrix; apply it step by step"
        )

    def forward(self, z: Tensor) -> Tensor:
        """``W z + U GELU(V z + b)``."""
        self._check_input(z)
        return self.skip(z) + self.down(nn.functional.gelu(self.up(z)))

    def to_config(self) -> dict[str, Any]:
        """Kind, dimensions and ``hidden``."""
        return {**super().to_config(), "hidden": self.hidden}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, hidden={self.hidden}"

    @torch.no_grad()
    def init_linear_part(self, weight: Tensor) -> None:
        """Set the skip ``W`` (for example to a least-squares fit before training the rest).

        Shapes:
            weight: ``[out_dim, in_dim]``.
        """
        self.skip.weight.copy_(weight.to(self.skip.weight))
