r"""The sparse operators that let :class:`~bcemb.models.sage.SageEncoder` skip redundant work.

A SAGE layer is ``h_v' = W_l mean_{u in N(v)} h_u + W_r h_v + b``. The encoder computes it as

.. math:: H' = M \, \operatorname{view}_{[2R, D]}(H W^\top) + b, \qquad W = [W_l; W_r]

one GEMM ``[R, D] x [D, 2D]`` (``lin_l`` and ``lin_r`` together) whose output, read as
``[2R, D]``, interleaves each source row's "neighbour" projection (row ``2s``) and "self"
projection (row ``2s + 1``); one sparse ``M`` then does the mean over neighbours and adds the
self term. Because the aggregation is linear it can follow the projection.

The operators also carry what is known before training:

* layer 1's input has only ``1 + T`` distinct rows: every user shares one input vector,
  and an item's input is determined by its features (``T`` distinct *item types*: items
  with the same feature multiset). So layer 1 projects ``1 + T`` rows, not ``N`` (or, when
  fewer, the embedding tables themselves: :meth:`SageEncoder.input_rows
  <bcemb.models.sage.SageEncoder.input_rows>`);
* layer 1's output is determined by the user (each user is distinct) or, for an item, by
  its type and whether it has neighbours (every neighbour is a user with the same input).
  So layer 1 outputs ``U + T`` distinct rows, weighted by their multiplicity in the
  BatchNorm statistics, and layer 2 projects ``U + T`` rows instead of ``N``.

From layer 3 on, rows are the ``N`` nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from bcemb.models.spmm import SparseOperator

__all__ = ["SagePlan", "LayerOp", "build_full_plan", "item_types", "subset_bags"]

#: Above this many padded feature slots per item, items are not grouped into types (each
#: item is its own type); the grouping is then not worth its memory.
_MAX_TYPE_KEY = 256


@dataclass
class LayerOp:
    """One layer's aggregation ``M`` (with transpose) and the BatchNorm row weights.

    Attributes:
        op: ``[dst rows, 2 * src rows]`` (see the module docstring).
        weight: Multiplicity of each destination row in the BatchNorm statistics
            (``None``: every row counts once). Shape ``[dst rows]``.
    """

    op: SparseOperator
    weight: Tensor | None = None

    def to(self, device: torch.device | str) -> LayerOp:
        """A copy on ``device``."""
        return LayerOp(self.op.to(device), None if self.weight is None else self.weight.to(device))


@dataclass
class SagePlan:
    """What the encoder runs on a graph: input rows, one operator per layer, output rows.

    Attributes:
        num_users: Users of the graph (the output's first rows).
        num_items: Items of the graph.
        num_input_items: Items whose inputs form rows ``1..`` of layer 1's input (row 0 is
            the shared user vector).
        input_bags: Per feature group, ``(indices, offsets)`` of those items.
        layers: One :class:`LayerOp` per SAGE layer, first layer first.
        out_index: Rows of the last layer's output to return, users then items (``None``:
            all rows, in order).
    """

    num_users: int
    num_items: int
    num_input_items: int
    input_bags: dict[str, tuple[Tensor, Tensor]]
    layers: list[LayerOp]
    out_index: Tensor | None = None

    def to(self, device: torch.device | str) -> SagePlan:
        """A copy on ``device``."""
        return SagePlan(
            self.num_users,
            self.num_items,
            self.num_input_items,
            {k: (a.to(device), b.to(device)) for k, (a, b) in self.input_bags.items()},
            [layer.to(device) for layer in self.layers],
            None if self.out_index is None else self.out_index.to(device),
        )


def item_types(
    item_bags: Mapping[str, tuple[Tensor, Tensor]], num_items: int, extra_key: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Group items with the same feature multiset (and the same ``extra_key``) into types.

    Returns ``(type of each item [I], one representative item per type [T], type sizes [T])``.
    Exact: two items share a type only if every feature group holds the same indices with
    the same counts, so their ``EmbeddingBag`` inputs are equal in sum and in mean mode.
    """
    columns = [extra_key.view(-1, 1).long()] if extra_key is not None else []
    width = 0
    for idx, off in item_bags.values():
        ends = torch.cat([off[1:], off.new_tensor([idx.numel()])])
        lengths = ends - off
        width += int(lengths.max()) if num_items else 0
        if width > _MAX_TYPE_KEY:
            ident = torch.arange(num_items)
            return ident, ident, torch.ones(num_items, dtype=torch.long)
        owner = torch.repeat_interleave(torch.arange(num_items), lengths)
        # Sort each bag's indices so that equal multisets give equal rows.
        order = torch.argsort(owner * (int(idx.max()) + 1 if idx.numel() else 1) + idx, stable=True)
        slot = torch.arange(idx.numel()) - off[owner[order]]
        key = torch.full((num_items, max(int(lengths.max()) if num_items else 0, 1)), -1, dtype=torch.long)
        key[owner[order], slot] = idx[order]
        columns.append(key)
    if not columns:
        columns.append(torch.zeros(num_items, 1, dtype=torch.long))
    _, inverse, counts = torch.unique(torch.cat(columns, dim=1), dim=0, return_inverse=True, return_counts=True)
    rep = torch.full((len(counts),), num_items, dtype=torch.long)
    rep.scatter_reduce_(0, inverse, torch.arange(num_items), reduce="amin")
    return inverse, rep, counts


def subset_bags(
    item_bags: Mapping[str, tuple[Tensor, Tensor]], items: Tensor
) -> dict[str, tuple[Tensor, Tensor]]:
    """The ``(indices, offsets)`` bags of ``items`` only, in that order."""
    out = {}
    for name, (idx, off) in item_bags.items():
        ends = torch.cat([off[1:], off.new_tensor([idx.numel()])])
        lengths = (ends - off)[items]
        starts = off[items]
        new_off = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)[:-1]])
        pos = torch.arange(int(lengths.sum())) - torch.repeat_interleave(new_off, lengths)
        out[name] = (idx[torch.repeat_interleave(starts, lengths) + pos], new_off)
    return out


def build_full_plan(
    adj_t: Tensor,
    num_users: int,
    num_items: int,
    item_bags: Mapping[str, tuple[Tensor, Tensor]],
    num_layers: int,
) -> SagePlan:
    """The full-graph plan of ``num_layers`` layers on a bipartite CSR adjacency (CPU tensors).

    ``adj_t`` is the symmetric ``[N, N]`` adjacency with unit values (users first).
    """
    u_n, i_n = num_users, num_items
    n = u_n + i_n
    crow = adj_t.crow_indices()
    deg = (crow[1:] - crow[:-1]).to(torch.float32)
    dst = torch.repeat_interleave(torch.arange(n), crow[1:] - crow[:-1])
    src = adj_t.col_indices()
    inv_deg = 1.0 / deg.clamp(min=1)
    val = inv_deg[dst]
    has_nb = deg[u_n:] > 0
    itype, rep, counts = item_types(item_bags, i_n, extra_key=has_nb)
    t_n = len(rep)
    node_type = torch.cat([torch.arange(u_n), u_n + itype])  # row of each node among U + T
    user_edge = dst < u_n  # edges user -> item neighbour; the others are item -> user

    def self_entries(rows: Tensor, src_rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return rows, 2 * src_rows + 1, torch.ones(len(rows))

    def operator(parts: list[tuple[Tensor, Tensor, Tensor]], shape: tuple[int, int]) -> SparseOperator:
        rows, cols, vals = (torch.cat(p) for p in zip(*parts, strict=True))
        return SparseOperator.from_coo(rows, cols, vals, shape)

    # Layer 1: sources are [shared user input, T item-type inputs]; destinations [U users, T types].
    ut, vt = dst[user_edge], src[user_edge] - u_n
    type_has_nb = has_nb[rep].to(torch.float32)
    op1 = operator(
        [
            (ut, 2 * (1 + itype[vt]), val[user_edge]),  # a user's mean over its items' types
            self_entries(torch.arange(u_n), torch.zeros(u_n, dtype=torch.long)),
            (u_n + torch.arange(t_n), torch.zeros(t_n, dtype=torch.long), type_has_nb),  # mean of users = u
            self_entries(u_n + torch.arange(t_n), 1 + torch.arange(t_n)),
        ],
        (u_n + t_n, 2 * (1 + t_n)),
    )
    weight1 = torch.cat([torch.ones(u_n), counts.to(torch.float32)])
    layers = [LayerOp(op1, weight1)]
    if num_layers >= 2:
        # Layer 2: sources are the U + T distinct rows of layer 1; destinations all N nodes.
        op2 = operator(
            [
                (dst, 2 * node_type[src], val),
                self_entries(torch.arange(n), node_type),
            ],
            (n, 2 * (u_n + t_n)),
        )
        layers.append(LayerOp(op2))
    if num_layers >= 3:
        op3 = operator([(dst, 2 * src, val), self_entries(torch.arange(n), torch.arange(n))], (n, 2 * n))
        layers += [LayerOp(op3)] * (num_layers - 2)
    return SagePlan(
        num_users=u_n,
        num_items=i_n,
        num_input_items=t_n,
        input_bags=subset_bags(item_bags, rep),
        layers=layers,
        out_index=node_type if num_layers == 1 else None,
    )
