"""The consumer model of the unintended tasks: an MLP with one output logit."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ConsumerMLP"]


class ConsumerMLP(nn.Module):
    """``[Linear -> BatchNorm -> ReLU -> Dropout] x num_hidden -> Linear(1)``.

    The paper uses one hidden layer, with the hidden size and dropout tuned on validation.

    Shapes:
        forward(x ``[N, in_dim]``) -> logits ``[N]``.
    """

    def __init__(self, in_dim: int, hidden: int = 256, dropout: float = 0.0, num_hidden: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(num_hidden):
            layers += [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout)]
            d = hidden
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """One logit per row."""
        return self.net(x).squeeze(-1)
