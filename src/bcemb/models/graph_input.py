"""What an embedding model consumes: a user-item graph snapshot in tensor form."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from bcemb.data.graph import EvolvingGraph
from bcemb.models.sage_plan import SagePlan, build_full_plan
from bcemb.models.sampled_plan import SamplingIndex

__all__ = ["GraphInput"]


@dataclass
class GraphInput:
    """A snapshot of the undirected user-item graph, ready for the encoder.

    Nodes ``0..num_users-1`` are users and ``num_users..num_users+num_items-1`` items.

    Attributes:
        num_users: Users in the snapshot.
        num_items: Items in the snapshot.
        adj_t: Sparse CSR adjacency (symmetric). Shape ``[N, N]``, ``N = users + items``.
        item_bags: Per feature group, ``(indices, offsets)`` for ``nn.EmbeddingBag`` over
            the ``num_items`` items. Shapes ``[nnz]`` and ``[num_items]``.
    """

    num_users: int
    num_items: int
    adj_t: Tensor
    item_bags: dict[str, tuple[Tensor, Tensor]]
    mean_adj: Tensor | None = None
    mean_adj_t: Tensor | None = None
    _plans: dict[int, SagePlan] = field(default_factory=dict, repr=False, compare=False)
    _sampling: SamplingIndex | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mean_adj is None:
            self.mean_adj, self.mean_adj_t = _mean_operators(self.adj_t)

    def sage_plan(self, num_layers: int) -> SagePlan:
        """The encoder's full-graph plan for ``num_layers`` layers (built once, then cached)."""
        if num_layers not in self._plans:
            cpu = {k: (a.cpu(), b.cpu()) for k, (a, b) in self.item_bags.items()}
            plan = build_full_plan(self.adj_t.cpu(), self.num_users, self.num_items, cpu, num_layers)
            self._plans[num_layers] = plan.to(self.adj_t.device)
        return self._plans[num_layers]

    def sampling_index(self) -> SamplingIndex:
        """What neighbour sampling needs of this graph (built once, then cached; CPU)."""
        if self._sampling is None:
            self._sampling = SamplingIndex.build(self)
        return self._sampling

    @property
    def num_nodes(self) -> int:
        """Users plus items."""
        return self.num_users + self.num_items

    @staticmethod
    def build(
        graph: EvolvingGraph, edge_ids: np.ndarray, *, num_users: int, num_items: int
    ) -> GraphInput:
        """The snapshot with the given edges and the first ``num_users``/``num_items`` nodes.

        Nodes without edges stay in the graph: the model embeds them from their input
        features alone (the inductive case).
        """
        u = torch.as_tensor(graph.user[edge_ids], dtype=torch.long)
        i = torch.as_tensor(graph.item[edge_ids], dtype=torch.long) + num_users
        n = num_users + num_items
        if len(u) and (int(u.max()) >= num_users or int(i.max()) >= n):
            raise ValueError("an edge points outside the snapshot's nodes")
        row = torch.cat([u, i])
        col = torch.cat([i, u])
        # Duplicate (user, item) edges would be double-counted by a mean; coalesce sums them,
        # so rebuild with unit values after coalescing.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            adj = torch.sparse_coo_tensor(torch.stack([row, col]), torch.ones(row.shape[0]), (n, n))
            adj = adj.coalesce()
            adj = torch.sparse_coo_tensor(adj.indices(), torch.ones(adj.indices().shape[1]), (n, n))
            adj_t = adj.coalesce().to_sparse_csr()
        bags = {}
        for name, group in graph.item_features.items():
            end = int(group.offsets[num_items])
            # Copies: the groups may be read-only memory maps, which torch cannot wrap.
            bags[name] = (
                torch.tensor(group.indices[:end], dtype=torch.long),
                torch.tensor(group.offsets[:num_items], dtype=torch.long),
            )
        return GraphInput(num_users, num_items, adj_t, bags)

    def to(self, device: torch.device | str) -> GraphInput:
        """A copy on ``device``."""
        return GraphInput(
            self.num_users,
            self.num_items,
            self.adj_t.to(device),
            {k: (a.to(device), b.to(device)) for k, (a, b) in self.item_bags.items()},
            self.mean_adj.to(device) if self.mean_adj is not None else None,
            self.mean_adj_t.to(device) if self.mean_adj_t is not None else None,
            {k: plan.to(device) for k, plan in self._plans.items()},
            self._sampling,
        )


def _mean_operators(adj_t: Tensor) -> tuple[Tensor, Tensor]:
    """Row-normalised adjacency ``D^-1 A`` and its transpose, both CSR.

    The mean aggregation is ``D^-1 A x``; its gradient is ``(D^-1 A)^T g``. Keeping the
    transpose ready spares the sort that a sparse backward pass would redo at every step
    (about half the cost of a GraphSAGE layer on a CPU).
    """
    n = adj_t.shape[0]
    crow = adj_t.crow_indices()
    deg = (crow[1:] - crow[:-1]).clamp(min=1).to(torch.float32)
    coo = adj_t.to_sparse_coo().coalesce()
    idx = coo.indices()
    vals = 1.0 / deg[idx[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fwd = torch.sparse_coo_tensor(idx, vals, (n, n)).coalesce().to_sparse_csr()
        bwd = torch.sparse_coo_tensor(idx.flip(0), vals, (n, n)).coalesce().to_sparse_csr()
    return fwd, bwd
