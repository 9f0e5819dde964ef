"""The GraphSAGE embedding model of the paper's benchmark (Hamilton et al., 2017)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import SAGEConv

from bcemb.models.base import MODELS
from bcemb.models.graph_input import GraphInput

__all__ = ["SageConfig", "SageEncoder", "mean_aggregate"]


class _MeanAggregate(torch.autograd.Function):
    """``D^-1 A x`` with a precomputed transpose for the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor, mean_adj: Tensor, mean_adj_t: Tensor) -> Tensor:  # noqa: ANN001
        ctx.mean_adj_t = mean_adj_t
        return mean_adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # noqa: ANN001
        return ctx.mean_adj_t @ grad, None, None


def mean_aggregate(x: Tensor, graph: GraphInput) -> Tensor:
    """Mean of the neighbours' features, ``D^-1 A x``. Shapes: ``[N, D] -> [N, D]``."""
    return _MeanAggregate.apply(x, graph.mean_adj, graph.mean_adj_t)


@dataclass(frozen=True)
class SageConfig:
    """Architecture of one model version.

    Attributes:
        num_layers: SAGEConv layers.
        dim: Input, hidden and output dimension ``D_k``.
        feature_sizes: Vocabulary size of each item feature group.
    """

    num_layers: int
    dim: int
    feature_sizes: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["feature_sizes"] = dict(self.feature_sizes)
        return d


@MODELS.register("sage", synonyms=("graphsage",))
class SageEncoder(nn.Module):
    r"""GraphSAGE over the undirected user-item graph.

    Inputs: one learned vector shared by all users (so any new user can be embedded: the
    model is inductive) and, for items, a learned shared vector plus the sum of one
    ``EmbeddingBag`` per feature group (the shared item vector keeps featureless items from
    starting at zero). Each layer is ``SAGEConv(mean, root weight) -> BatchNorm -> ReLU``,
    without the ReLU after the last layer:

    .. math:: h_v' = W_1 h_v + W_2 \operatorname{mean}_{u \in N(v)} h_u

    Shapes:
        forward(graph) -> (user_emb ``[num_users, dim]``, item_emb ``[num_items, dim]``).
    """

    def __init__(self, config: SageConfig) -> None:
        super().__init__()
        if config.num_layers < 1 or config.dim < 1:
            raise ValueError(f"need at least one layer and a positive dim, got {config}")
        self.config = config
        d = config.dim
        self.user_input = nn.Parameter(torch.empty(d))
        self.item_input = nn.Parameter(torch.empty(d))
        self.item_bags = nn.ModuleDict(
            {name: nn.EmbeddingBag(max(size, 1), d, mode="sum") for name, size in config.feature_sizes.items()}
        )
        self.convs = nn.ModuleList(SAGEConv(d, d, aggr="mean") for _ in range(config.num_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(d) for _ in range(config.num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every parameter."""
        nn.init.normal_(self.user_input, std=0.1)
        nn.init.normal_(self.item_input, std=0.1)
        for bag in self.item_bags.values():
            nn.init.normal_(bag.weight, std=0.1)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            conv.reset_parameters()
            norm.reset_parameters()

    @property
    def dim(self) -> int:
        """Output dimension ``D_k``."""
        return self.config.dim

    def to_config(self) -> dict[str, Any]:
        """JSON-able architecture (the :class:`~bcemb.models.base.EmbeddingModel` protocol)."""
        return {"model": "sage", **self.config.to_dict()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SageEncoder:
        """A fresh model of the architecture :meth:`to_config` describes."""
        return cls(SageConfig(int(config["num_layers"]), int(config["dim"]), dict(config.get("feature_sizes", {}))))

    def node_features(self, graph: GraphInput) -> Tensor:
        """Layer-0 features of all nodes. Shape ``[N, dim]``."""
        users = self.user_input.expand(graph.num_users, -1)
        items = self.item_input.expand(graph.num_items, -1)
        for name, bag in self.item_bags.items():
            if name in graph.item_bags:
                idx, off = graph.item_bags[name]
                items = items + bag(idx, off)
        return torch.cat([users, items], dim=0)

    def forward(self, graph: GraphInput) -> tuple[Tensor, Tensor]:
        """Embed every user and item of the snapshot."""
        x = self.node_features(graph)
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            # Exactly SAGEConv(mean, root weight): lin_l(mean of neighbours) + lin_r(x), with
            # the aggregation done by our operator pair (tests check it equals conv(x, adj_t)).
            x = norm(conv.lin_l(mean_aggregate(x, graph)) + conv.lin_r(x))
            if i < last:
                x = x.relu()
        return x[: graph.num_users], x[graph.num_users :]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={self.config.num_layers}, dim={self.config.dim})"
