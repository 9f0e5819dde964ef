"""The GraphSAGE embedding model of the paper's benchmark (Hamilton et al., 2017)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import SAGEConv

from bcemb.models.base import MODELS
from bcemb.models.graph_input import GraphInput
from bcemb.models.sage_plan import SagePlan
from bcemb.models.spmm import spmm

__all__ = ["BAG_MODES", "SageConfig", "SageEncoder", "mean_aggregate", "project"]


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


def project(conv: SAGEConv, x: Tensor) -> Tensor:
    """A layer's two projections in one GEMM, read as ``[2R, D]``: row ``2s`` is ``lin_l`` of
    source row ``s``, row ``2s + 1`` its ``lin_r`` (see :mod:`bcemb.models.sage_plan`).

    This is all of the step's dense arithmetic (``benchmarks/train_speed.py`` times it alone).
    Shapes: ``[R, D] -> [2R, D]``.
    """
    w = _stacked_weight(conv)
    return F.linear(x, w).view(-1, w.shape[1])


def _stacked_weight(conv: SAGEConv) -> Tensor:
    """``[W_l; W_r]``, ``[2D, D]``: both projections of a layer as one GEMM's weight."""
    return torch.cat([conv.lin_l.weight, conv.lin_r.weight])


#: ``EmbeddingBag`` reductions an item's feature group can use.
BAG_MODES = ("sum", "mean")


@dataclass(frozen=True)
class SageConfig:
    """Architecture of one model version.

    Attributes:
        num_layers: SAGEConv layers.
        dim: Input, hidden and output dimension ``D_k``.
        feature_sizes: Vocabulary size of each item feature group.
        bag_mode: How a feature group's embeddings are pooled: ``"sum"`` (our default, and
            that of every model saved before this field existed) or ``"mean"`` (the
            reference code's ``EmbeddingBag`` default).
    """

    num_layers: int
    dim: int
    feature_sizes: Mapping[str, int] = field(default_factory=dict)
    bag_mode: str = "sum"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["feature_sizes"] = dict(self.feature_sizes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SageConfig:
        """Inverse of :meth:`to_dict`; fields missing from older files take their defaults."""
        return cls(
            int(d["num_layers"]), int(d["dim"]), dict(d.get("feature_sizes", {})),
            str(d.get("bag_mode", "sum")),
        )


class _WeightedBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm whose statistics weight each row (see :func:`_weighted_batch_norm`).

    Autograd through the plain formula makes about twenty ``[R, D]`` passes forward and
    backward (broadcast products, squares, the negated mean's gradient); this makes about five
    forward and seven backward, with the closed-form gradient (``share`` = row weight / total,
    ``invstd`` = 1 / sqrt(var + eps), ``x_hat`` = centred rows times ``invstd``)
    ``dx = invstd * gamma * (grad - share * sum(grad) - share * x_hat * sum(grad * x_hat))``.
    Once differentiable: a second derivative through it raises.
    """

    @staticmethod
    def forward(  # noqa: D102
        ctx,  # noqa: ANN001
        x: Tensor,
        share: Tensor,
        gamma: Tensor | None,
        beta: Tensor | None,
        eps: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        mean = share @ x  # the weighted mean as one matrix-vector product
        centred = x - mean
        var = share @ centred.square()
        invstd = torch.rsqrt(var + eps)
        scale = invstd if gamma is None else invstd * gamma
        out = centred * scale if beta is None else torch.addcmul(beta, centred, scale)
        ctx.save_for_backward(centred, share, invstd, scale)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var  # the statistics for the running estimates

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # noqa: D102
        ctx,  # noqa: ANN001
        grad: Tensor,
        _mean: Tensor,
        _var: Tensor,
    ) -> tuple[Tensor, None, Tensor | None, Tensor | None, None]:
        centred, share, invstd, scale = ctx.saved_tensors  # scale = invstd * gamma
        grad_beta = grad.sum(0)
        grad_gamma = (grad * centred).sum(0).mul_(invstd)  # sum(grad * x_hat)
        # dx = scale * grad - share * (scale * grad_beta + centred * (scale * invstd * grad_gamma))
        correction = torch.addcmul(scale * grad_beta, centred, scale * invstd * grad_gamma)
        correction.mul_(share.unsqueeze(1))
        grad_x = (grad * scale).sub_(correction)
        needs = ctx.needs_input_grad
        return (
            grad_x,
            None,
            grad_gamma if needs[2] else None,
            grad_beta if needs[3] else None,
            None,
        )


def _weighted_batch_norm(x: Tensor, weight: Tensor, norm: nn.BatchNorm1d) -> Tensor:
    """Training-mode BatchNorm of rows that stand for ``weight`` identical rows each.

    Equals ``norm`` applied to the expanded rows (statistics over ``weight.sum()`` rows,
    biased variance to normalise, unbiased for the running estimate), on ``len(x)`` rows.
    """
    n = float(weight.sum())
    if n <= 1:
        raise ValueError("BatchNorm needs more than one row per channel when training")
    share = (weight / n).to(x.dtype)
    # Without affine parameters, norm.weight and norm.bias are None.
    out, mean, var = _WeightedBatchNorm.apply(x, share, norm.weight, norm.bias, norm.eps)
    if norm.track_running_stats and norm.running_mean is not None:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            factor = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
            norm.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            norm.running_var.mul_(1 - factor).add_(var.detach() * (n / (n - 1)), alpha=factor)
    return out


@MODELS.register("sage", synonyms=("graphsage",))
class SageEncoder(nn.Module):
    r"""GraphSAGE over the undirected user-item graph.

    Inputs: one learned vector shared by all users (so any new user can be embedded: the
    model is inductive) and, for items, a learned shared vector plus the pooled (``bag_mode``)
    ``EmbeddingBag`` of each feature group (the shared item vector keeps featureless items
    from starting at zero). Each layer is ``SAGEConv(mean, root weight) -> BatchNorm ->
    ReLU``, without the ReLU after the last layer:

    .. math:: h_v' = W_1 h_v + W_2 \operatorname{mean}_{u \in N(v)} h_u

    The computation follows a :class:`~bcemb.models.sage_plan.SagePlan` (one GEMM per layer
    for both weights, the first layers on distinct rows only); the result equals PyG's
    ``SAGEConv`` layers, which :mod:`bcemb.models.sage_reference` runs for tests and
    benchmarks.

    Shapes:
        forward(graph) -> (user_emb ``[num_users, dim]``, item_emb ``[num_items, dim]``).
    """

    def __init__(self, config: SageConfig) -> None:
        super().__init__()
        if config.num_layers < 1 or config.dim < 1:
            raise ValueError(f"need at least one layer and a positive dim, got {config}")
        if config.bag_mode not in BAG_MODES:
            raise ValueError(f"bag_mode must be one of {BAG_MODES}, got {config.bag_mode!r}")
        self.config = config
        d = config.dim
        self.user_input = nn.Parameter(torch.empty(d))
        self.item_input = nn.Parameter(torch.empty(d))
        self.item_bags = nn.ModuleDict(
            {
                name: nn.EmbeddingBag(max(size, 1), d, mode=config.bag_mode)
                for name, size in config.feature_sizes.items()
            }
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
        return cls(SageConfig.from_dict(config))

    def item_features(self, item_bags: Mapping[str, tuple[Tensor, Tensor]], num_items: int) -> Tensor:
        """Layer-0 features of the items whose ``(indices, offsets)`` bags are given. ``[I, dim]``."""
        items = self.item_input.expand(num_items, -1)
        for name, bag in self.item_bags.items():
            if name in item_bags:
                idx, off = item_bags[name]
                items = items + bag(idx, off)
        return items

    def node_features(self, graph: GraphInput) -> Tensor:
        """Layer-0 features of all nodes. Shape ``[N, dim]``."""
        users = self.user_input.expand(graph.num_users, -1)
        return torch.cat([users, self.item_features(graph.item_bags, graph.num_items)], dim=0)

    def _vocab_groups(self, plan: SagePlan) -> list[str]:
        return [name for name in self.item_bags if name in plan.input_bags]

    def input_rows(self, plan: SagePlan) -> int:
        """Rows that layer 1's GEMM projects on ``plan``: the cheaper of its input rows (shared
        user vector + the plan's items) and the embedding tables (see :meth:`_input_projection`)."""
        tables = 2 + sum(self.item_bags[name].num_embeddings for name in self._vocab_groups(plan))
        return min(1 + plan.num_input_items, tables)

    def _input_projection(self, conv: SAGEConv, plan: SagePlan) -> Tensor:
        """Layer 1's projections of its input rows, as :func:`project` gives them. ``[2(1 + T), D]``.

        An item's input is the shared item vector plus pooled feature embeddings, a linear
        function of the tables, so the projection may run on the tables instead (shared
        vectors and every feature's row: 64 rows on ML-100K against 667 item types) and the
        items' projections are then bags of projected rows: the same map applied before the
        pooling instead of after. Whichever has fewer rows is computed.
        """
        if self.input_rows(plan) == 1 + plan.num_input_items:
            items = self.item_features(plan.input_bags, plan.num_input_items)
            return project(conv, torch.cat([self.user_input.unsqueeze(0), items]))
        groups = self._vocab_groups(plan)
        w = _stacked_weight(conv)
        tables = [self.user_input.unsqueeze(0), self.item_input.unsqueeze(0)]
        tables += [self.item_bags[name].weight for name in groups]
        projected = F.linear(torch.cat(tables), w).split([1, 1] + [t.shape[0] for t in tables[2:]])
        items = projected[1].expand(plan.num_input_items, -1)
        for name, table in zip(groups, projected[2:], strict=True):
            idx, off = plan.input_bags[name]
            items = items + F.embedding_bag(idx, table, off, mode=self.item_bags[name].mode)
        return torch.cat([projected[0], items]).view(-1, w.shape[1])

    def run_plan(self, plan: SagePlan) -> Tensor:
        """The last layer's output rows that ``plan`` selects. Shape ``[rows, dim]``."""
        if len(plan.layers) != len(self.convs):
            raise ValueError(f"plan has {len(plan.layers)} layers, model {len(self.convs)}")
        last = len(self.convs) - 1
        x = torch.empty(0)  # layer 1 reads the plan's inputs, not x
        for i, (conv, norm, layer) in enumerate(zip(self.convs, self.norms, plan.layers, strict=True)):
            x = spmm(layer.op, self._input_projection(conv, plan) if i == 0 else project(conv, x))
            if conv.lin_l.bias is not None:
                x = x.add_(conv.lin_l.bias)  # in place: spmm's backward does not keep its output
            if self.training and layer.weight is not None:
                x = _weighted_batch_norm(x, layer.weight, norm)
            else:
                x = norm(x)
            if i < last:
                x = x.relu_()
        return x if plan.out_index is None else x[plan.out_index]

    def embed(self, graph: GraphInput) -> Tensor:
        """Every node's embedding, users then items. Shape ``[N, dim]``."""
        return self.run_plan(graph.sage_plan(len(self.convs)))

    def forward(self, graph: GraphInput) -> tuple[Tensor, Tensor]:
        """Embed every user and item of the snapshot."""
        x = self.embed(graph)
        return x[: graph.num_users], x[graph.num_users :]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={self.config.num_layers}, dim={self.config.dim})"
