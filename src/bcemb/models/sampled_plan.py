r"""Neighbour-sampled plans: the encoder on a batch's computation graph instead of the full graph.

GraphSAGE's minibatch training (Hamilton et al., 2017), as PyG's ``NeighborLoader`` does it:
from the seed nodes, hop ``h`` keeps at most ``fanouts[h-1]`` neighbours of every node
reached so far (uniformly, without replacement), and layer ``L - h + 1`` averages over the
kept neighbours only. Node sets grow outwards, ``S_0`` (the seeds) ``⊂ S_1 ⊂ ... ⊂ S_L``,
each a prefix of the next, so a node's "self" row is its own position. The result is a
:class:`~bcemb.models.sage_plan.SagePlan` whose output rows are the seeds, in order.

PyG's own samplers need ``pyg-lib`` or ``torch-sparse``; neither installs from PyPI for the
torch we pin, so the sampling is done here with plain torch ops on the CSR adjacency.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bcemb.models.graph_input import GraphInput
from bcemb.models.sage_plan import LayerOp, SagePlan, subset_bags
from bcemb.models.spmm import SparseOperator

__all__ = ["sample_neighbors", "build_sampled_plan", "layer_fanouts"]


def layer_fanouts(fanouts: Sequence[int], num_layers: int) -> list[int]:
    """``fanouts`` padded (with its last value) or cut to ``num_layers`` hops; ``-1`` keeps all."""
    if not fanouts:
        raise ValueError("fanouts must name at least one hop")
    if any(f == 0 or f < -1 for f in fanouts):
        raise ValueError(f"fanouts must be positive or -1 (all neighbours), got {list(fanouts)}")
    return [int(fanouts[min(h, len(fanouts) - 1)]) for h in range(num_layers)]


def sample_neighbors(
    crow: Tensor, col: Tensor, nodes: Tensor, fanout: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Up to ``fanout`` neighbours of each of ``nodes``, uniformly without replacement.

    Returns ``(position in nodes of the receiving node [E'], neighbour node id [E'])``.
    """
    start = crow[nodes]
    deg = crow[nodes + 1] - start
    owner = torch.repeat_interleave(torch.arange(len(nodes)), deg)
    first = torch.cumsum(deg, 0) - deg
    edge = torch.repeat_interleave(start - first, deg) + torch.arange(int(deg.sum()))
    if fanout < 0 or deg.numel() == 0 or int(deg.max()) <= fanout:
        return owner, col[edge]
    # A random key per candidate edge; the fanout smallest keys of each node are kept.
    keys = torch.rand(len(edge), generator=generator, dtype=torch.float64)
    order = torch.argsort(owner.to(torch.float64) + keys)
    rank = torch.arange(len(edge)) - first[owner[order]]
    keep = order[rank < fanout]
    return owner[keep], col[edge[keep]]


def build_sampled_plan(
    graph: GraphInput,
    seeds: Tensor,
    num_layers: int,
    fanouts: Sequence[int],
    generator: torch.Generator | None = None,
) -> SagePlan:
    """The plan that embeds ``seeds`` (distinct node ids) through sampled neighbourhoods (CPU)."""
    adj = graph.adj_t.cpu()
    crow, col = adj.crow_indices(), adj.col_indices()
    n, u_n = graph.num_nodes, graph.num_users
    seeds = seeds.cpu()
    position = torch.full((n,), -1, dtype=torch.long)
    sets = [seeds]
    position[seeds] = torch.arange(len(seeds))
    hops: list[tuple[Tensor, Tensor]] = []
    for fanout in layer_fanouts(fanouts, num_layers):
        frontier = sets[-1]
        dst, src = sample_neighbors(crow, col, frontier, fanout, generator)
        new = torch.unique(src[position[src] < 0])
        position[new] = len(frontier) + torch.arange(len(new))
        sets.append(torch.cat([frontier, new]))
        hops.append((dst, position[src]))
    # Layer 1's inputs: row 0 the shared user vector, then the items of S_L.
    outer = sets[-1]
    is_item = outer >= u_n
    items = outer[is_item] - u_n
    in_row = torch.zeros(len(outer), dtype=torch.long)
    in_row[is_item] = 1 + torch.arange(len(items))
    layers: list[LayerOp] = []
    for h in range(num_layers, 0, -1):  # layer L - h + 1 maps S_h -> S_{h-1}
        dst, src = hops[h - 1]
        n_dst, n_src = len(sets[h - 1]), len(sets[h])
        count = torch.bincount(dst, minlength=n_dst).clamp(min=1).to(torch.float32)
        src_row = in_row[src] if h == num_layers else src
        self_row = in_row[:n_dst] if h == num_layers else torch.arange(n_dst)
        width = 1 + len(items) if h == num_layers else n_src
        rows = torch.cat([dst, torch.arange(n_dst)])
        cols = torch.cat([2 * src_row, 2 * self_row + 1])
        vals = torch.cat([1.0 / count[dst], torch.ones(n_dst)])
        layers.append(LayerOp(SparseOperator.from_coo(rows, cols, vals, (n_dst, 2 * width))))
    bags = {k: (a.cpu(), b.cpu()) for k, (a, b) in graph.item_bags.items()}
    plan = SagePlan(
        num_users=u_n,
        num_items=graph.num_items,
        num_input_items=len(items),
        input_bags=subset_bags(bags, items),
        layers=layers,
    )
    return plan.to(graph.adj_t.device)
