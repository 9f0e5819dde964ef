"""The plain PyG computation of a :class:`~bcemb.models.sage.SageEncoder`, as the paper's code runs it.

Every node's input features, then per layer ``SAGEConv(x, adjacency) -> BatchNorm -> ReLU``
over the full graph, with PyG doing the aggregation (``adj_t`` as a sparse matrix, or an
``edge_index`` with scatter-based message passing). It uses the encoder's own modules, so
both computations share their weights: tests compare the encoder's fast path against it,
and ``benchmarks/train_speed.py`` times it as the baseline.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from bcemb.models.graph_input import GraphInput
from bcemb.models.sage import SageEncoder

__all__ = ["plain_pyg_embed", "plain_pyg_adjacency"]


def plain_pyg_adjacency(graph: GraphInput, kind: Literal["adj_t", "edge_index"] = "adj_t") -> Tensor:
    """What :func:`plain_pyg_embed` hands to ``SAGEConv``: the CSR ``adj_t`` or a ``[2, E]`` edge_index."""
    if kind == "adj_t":
        return graph.adj_t
    if kind == "edge_index":
        coo = graph.adj_t.to_sparse_coo().coalesce()
        # SAGEConv aggregates messages from edge_index[0] into edge_index[1]; adj_t's rows
        # are the receivers, so flip (the graph is symmetric, so this only changes order).
        return coo.indices().flip(0).contiguous()
    raise ValueError(f"kind must be 'adj_t' or 'edge_index', got {kind!r}")


def plain_pyg_embed(model: SageEncoder, graph: GraphInput, adjacency: Tensor) -> Tensor:
    """Every node's embedding through ``model.convs`` as plain PyG layers. Shape ``[N, dim]``."""
    x = model.node_features(graph)
    last = len(model.convs) - 1
    for i, (conv, norm) in enumerate(zip(model.convs, model.norms, strict=True)):
        x = norm(conv(x, adjacency))
        if i < last:
            x = x.relu()
    return x
