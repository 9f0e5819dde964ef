r"""Neighbour-sampled plans: the encoder on a batch's computation graph instead of the full graph.

GraphSAGE's minibatch training (Hamilton et al., 2017), as PyG's ``NeighborLoader`` does it:
from the seed nodes, hop ``h`` keeps at most ``fanouts[h-1]`` neighbours of every node
reached so far (uniformly, without replacement), and layer ``L - h + 1`` averages over the
kept neighbours only. Node sets grow outwards, ``S_0`` (the seeds) ``⊂ S_1 ⊂ ... ⊂ S_L``,
each a prefix of the next, so a node's "self" row is its own position. The result is a
:class:`~bcemb.models.sage_plan.SagePlan` whose output rows are the seeds, in order.

Like the full-graph plan (:mod:`bcemb.models.sage_plan`), the first two layers run on distinct
rows only: every user shares one input vector and an item's input is its *type* (its feature
multiset), so layer 1 projects ``1 +`` (types reached) rows; an item's layer-1 output depends
only on its type and on whether it has neighbours (their mean is always the shared user
vector, whichever users are drawn), so items' neighbours are never sampled at the last hop
and layer 2 projects (users of ``S_{L-1}``) ``+`` (their items' types) rows.

Nothing here sorts per batch except one stable sort per layer for the transposed operator:
neighbours are drawn by Floyd's algorithm (``fanout`` vectorised rounds of random offsets
into the CSR row), new nodes are found with a mask over the nodes, and the layer operators
are written straight into CSR. PyG's own samplers need ``pyg-lib`` or ``torch-sparse``,
neither of which installs from PyPI for the torch we pin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from bcemb.models.sage_plan import LayerOp, SagePlan, item_types, subset_bags
from bcemb.models.spmm import SparseOperator

if TYPE_CHECKING:
    from bcemb.models.graph_input import GraphInput

__all__ = ["SamplingIndex", "sample_neighbors", "build_sampled_plan", "layer_fanouts"]


@dataclass
class SamplingIndex:
    """What sampling needs of one graph, built once (CPU tensors).

    Attributes:
        crow, col: The symmetric CSR adjacency. Shapes ``[N + 1]``, ``[nnz]``.
        num_users: Users (nodes ``0..U-1``).
        item_type: Type of each item (same features, same "has neighbours"). Shape ``[I]``.
        type_has_nb: Whether the type's items have neighbours. Shape ``[T]``, float.
        type_bags: ``(indices, offsets)`` bags of one representative item per type.
    """

    crow: Tensor
    col: Tensor
    num_users: int
    item_type: Tensor
    type_has_nb: Tensor
    type_bags: dict[str, tuple[Tensor, Tensor]]

    @property
    def num_nodes(self) -> int:
        """Users plus items."""
        return len(self.crow) - 1

    @staticmethod
    def build(graph: GraphInput) -> SamplingIndex:
        """The index of ``graph``."""
        adj = graph.adj_t.cpu()
        crow, col = adj.crow_indices(), adj.col_indices()
        has_nb = (crow[graph.num_users + 1 :] - crow[graph.num_users : -1]) > 0
        bags = {k: (a.cpu(), b.cpu()) for k, (a, b) in graph.item_bags.items()}
        itype, rep, _ = item_types(bags, graph.num_items, extra_key=has_nb)
        return SamplingIndex(crow, col, graph.num_users, itype, has_nb[rep].float(), subset_bags(bags, rep))


def layer_fanouts(fanouts: Sequence[int], num_layers: int) -> list[int]:
    """``fanouts`` padded (with its last value) or cut to ``num_layers`` hops; ``-1`` keeps all."""
    if not fanouts:
        raise ValueError("fanouts must name at least one hop")
    if any(f == 0 or f < -1 for f in fanouts):
        raise ValueError(f"fanouts must be positive or -1 (all neighbours), got {list(fanouts)}")
    return [int(fanouts[min(h, len(fanouts) - 1)]) for h in range(num_layers)]


def _floyd_offsets(deg: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """``k`` distinct offsets in ``[0, deg)`` per row, uniformly (Floyd's algorithm). ``[R, k]``.

    Round ``s`` draws ``t`` in ``[0, j]`` with ``j = deg - k + s`` and keeps ``j`` instead
    when ``t`` was already drawn; every ``k``-subset is then equally likely. Rows must have
    ``deg >= k``. The rounds are vectorised over rows; the duplicate check costs ``k^2 / 2``
    comparisons per row, far less than sorting the rows' candidates.
    """
    draws = torch.rand((len(deg), k), generator=generator, dtype=torch.float64)
    picks = torch.empty((len(deg), k), dtype=torch.long)
    for s in range(k):
        j = deg - k + s
        t = (draws[:, s] * (j + 1).to(torch.float64)).long().minimum(j)  # minimum: rounding at 1.0
        if s:
            t = torch.where((picks[:, :s] == t.unsqueeze(1)).any(1), j, t)
        picks[:, s] = t
    return picks


def sample_neighbors(
    crow: Tensor, col: Tensor, nodes: Tensor, fanout: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Up to ``fanout`` neighbours of each of ``nodes``, uniformly without replacement.

    Returns ``(position in nodes of the receiving node [E'], neighbour node id [E'])``, grouped
    by receiving node in the order of ``nodes`` (positions non-decreasing).
    """
    start = crow[nodes]
    deg = crow[nodes + 1] - start
    take = deg if fanout < 0 else deg.clamp(max=fanout)
    first = torch.cumsum(take, 0) - take  # where each node's picks start in the output
    owner = torch.repeat_interleave(torch.arange(len(nodes)), take)
    # By default an edge's offset is its rank in its node's row (all neighbours kept)...
    offset = torch.arange(len(owner)) - first[owner]
    big = (deg > take).nonzero().squeeze(1)
    if len(big):
        # ... and nodes with more than ``fanout`` neighbours get random distinct offsets.
        slots = first[big].unsqueeze(1) + torch.arange(fanout)
        offset[slots.reshape(-1)] = _floyd_offsets(deg[big], fanout, generator).reshape(-1)
    return owner, col[start[owner] + offset]


def _new_nodes(src: Tensor, known: Tensor, num_nodes: int) -> Tensor:
    """The distinct ids of ``src`` not in ``known``, ascending (a mask over the nodes, no sort)."""
    mark = torch.zeros(num_nodes, dtype=torch.bool)
    mark[src] = True
    mark[known] = False
    return mark.nonzero().squeeze(1)


def _operator(owner: Tensor, cols: Tensor, vals: Tensor, self_cols: Tensor, shape: tuple[int, int]) -> SparseOperator:
    """``M`` with row ``r`` = its entries (``owner == r``) then ``1`` at ``self_cols[r]``.

    ``owner`` must be non-decreasing: the entries are then already in CSR order, so ``M`` is
    written without a sort (a row may repeat a column; the aggregation sums repeats) and
    only ``M^T`` needs one (stable, by column).
    """
    n_rows = shape[0]
    per_row = torch.bincount(owner, minlength=n_rows) + 1
    crow = torch.zeros(n_rows + 1, dtype=torch.long)
    torch.cumsum(per_row, 0, out=crow[1:])
    nnz = int(crow[-1])
    col = torch.empty(nnz, dtype=torch.long)
    val = torch.empty(nnz, dtype=torch.float32)
    at = torch.arange(len(owner)) + owner  # every earlier row holds one self entry more
    col[at], val[at] = cols, vals
    col[crow[1:] - 1], val[crow[1:] - 1] = self_cols, 1.0
    row = torch.repeat_interleave(torch.arange(n_rows), per_row)
    order = torch.argsort(col, stable=True)
    crow_t = torch.zeros(shape[1] + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(col, minlength=shape[1]), 0, out=crow_t[1:])
    return SparseOperator(
        torch.sparse_csr_tensor(crow, col, val, shape),
        torch.sparse_csr_tensor(crow_t, row[order], val[order], shape[::-1]),
    )


def _compact(ids: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """``(distinct ids ascending, map id -> its index among them)`` by a mask over ``size``."""
    present = torch.zeros(size, dtype=torch.bool)
    present[ids] = True
    distinct = present.nonzero().squeeze(1)
    index = torch.full((size,), -1, dtype=torch.long)
    index[distinct] = torch.arange(len(distinct))
    return distinct, index


def _mean_operator(dst: Tensor, src_rows: Tensor, self_rows: Tensor, width: int) -> SparseOperator:
    """A SAGE layer's ``M``: row ``r`` the mean over its ``src_rows`` (entries ``dst == r``) + self."""
    n_dst = len(self_rows)
    count = torch.bincount(dst, minlength=n_dst).clamp(min=1).to(torch.float32)
    return _operator(dst, 2 * src_rows, 1.0 / count[dst], 2 * self_rows + 1, (n_dst, 2 * width))


def build_sampled_plan(
    graph: GraphInput,
    seeds: Tensor,
    num_layers: int,
    fanouts: Sequence[int],
    generator: torch.Generator | None = None,
) -> SagePlan:
    """The plan that embeds ``seeds`` (distinct node ids) through sampled neighbourhoods (CPU)."""
    index = graph.sampling_index()
    crow, col, u_n, n = index.crow, index.col, index.num_users, index.num_nodes
    fan = layer_fanouts(fanouts, num_layers)
    seeds = seeds.cpu()
    position = torch.full((n,), -1, dtype=torch.long)
    position[seeds] = torch.arange(len(seeds))
    sets = [seeds]
    hops: list[tuple[Tensor, Tensor]] = []  # hop h: (dst position in S_{h-1}, src position in S_h)
    for fanout in fan[:-1]:
        frontier = sets[-1]
        dst, src = sample_neighbors(crow, col, frontier, fanout, generator)
        new = _new_nodes(src, frontier, n)
        position[new] = len(frontier) + torch.arange(len(new))
        sets.append(torch.cat([frontier, new]))
        hops.append((dst, position[src]))

    # Layer 1 (S_{L-1} <- inputs): only users draw neighbours (items); see the module docstring.
    last = sets[-1]
    user_at = (last < u_n).nonzero().squeeze(1)
    item_at = (last >= u_n).nonzero().squeeze(1)
    item_type = index.item_type[last[item_at] - u_n]
    owner, nb = sample_neighbors(crow, col, last[user_at], fan[-1], generator)
    nb_type = index.item_type[nb - u_n]
    in_types, in_index = _compact(torch.cat([item_type, nb_type]), len(index.type_has_nb))
    out_types, out_index = _compact(item_type, len(index.type_has_nb))
    n_ul, n_tl = len(user_at), len(out_types)
    has_nb = index.type_has_nb[out_types]
    with_nb = has_nb.nonzero().squeeze(1)
    count = torch.bincount(owner, minlength=n_ul).clamp(min=1).to(torch.float32)
    op1 = _operator(
        torch.cat([owner, n_ul + with_nb]),
        torch.cat([2 * (1 + in_index[nb_type]), torch.zeros(len(with_nb), dtype=torch.long)]),
        torch.cat([1.0 / count[owner], has_nb[with_nb]]),
        torch.cat([torch.ones(n_ul, dtype=torch.long), 2 * (1 + in_index[out_types]) + 1]),
        (n_ul + n_tl, 2 * (1 + len(in_types))),
    )
    # Layer 1's output rows: the users of S_{L-1}, then its item types (weighted by how many
    # of its items have the type, so BatchNorm sees every node of S_{L-1} once).
    row_of = torch.empty(len(last), dtype=torch.long)
    row_of[user_at] = torch.arange(n_ul)
    row_of[item_at] = n_ul + out_index[item_type]
    weight = torch.cat([torch.ones(n_ul), torch.bincount(out_index[item_type], minlength=n_tl).float()])
    layers = [LayerOp(op1, weight)]
    for h in range(num_layers - 1, 0, -1):  # layer L - h + 1 maps S_h -> S_{h-1}
        dst, src = hops[h - 1]
        n_dst = len(sets[h - 1])
        if h == num_layers - 1:  # layer 2 reads layer 1's distinct rows
            layers.append(LayerOp(_mean_operator(dst, row_of[src], row_of[:n_dst], n_ul + n_tl)))
        else:
            layers.append(LayerOp(_mean_operator(dst, src, torch.arange(n_dst), len(sets[h]))))
    plan = SagePlan(
        num_users=u_n,
        num_items=graph.num_items,
        num_input_items=len(in_types),
        input_bags=subset_bags(index.type_bags, in_types),
        layers=layers,
        out_index=row_of if num_layers == 1 else None,
    )
    return plan.to(graph.adj_t.device)
