"""The same-graph probe and the chain's error budget (``bcemb store check``).

The probes kept at publish time (``versions/<j>/probes.parquet``) hold ``z_j`` as ``M_j`` made
it on the graph at ``t_j``. Comparing the chain's ver-j view with them measures what a ver-j
consumer sees change: the chain's own error *plus* the drift of the graph since ``t_j``.

To separate the two, a publish of latest version ``K`` also records, while the run still has
every ``M_j``, version j's vectors recomputed by ``M_j`` *on the latest graph* ``G_K`` for the
latest probe nodes (``versions/K/same_graph/v<j>.parquet``). The distance between the chain's
view ``B_{j+1} o ... o B_K (M_K(G_K))`` and ``M_j(G_K)`` is the chain's own error (the paper's
alignment error); the rest of the published-probe error is the graph's drift.

Errors compound along the chain, so the budget grows with the number of hops ``K - j``:
``budget(h) = per_hop * h`` (relative to the probes' mean norm). When a version exceeds its
budget the recommendation is to re-anchor: publish a fresh keep-all snapshot of the oldest
version still served, so that its consumers stop depending on a long chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from bcemb.store import io as sio

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PER_HOP", "HopCheck", "chain_budget", "recommendation", "stage_same_graph"]

#: Default error budget per hop: 20 % of the probes' mean norm for each link of the chain.
DEFAULT_PER_HOP = 0.2
ROLE = "same_graph_v{j}"


@torch.no_grad()
def stage_same_graph(
    run_dir: Path,
    snapshot: Any,
    out: Path,
    record: Callable[[str | None, str], str],
    latest: int,
    n_users: int,
    n_items: int,
    probes: pa.Table,
) -> dict[str, str]:
    """Write ``M_j(G_K)`` of the latest probe nodes for every ``j < K`` (publish-time hook).

    Args:
        run_dir: The run (it has every ``M_j``).
        snapshot: ``G_K``, the graph the latest model embeds.
        out: The staged version folder of ``K``.
        record: Registers a staged file (role, name relative to ``out``) with the publish.
        latest: ``K``.
        n_users: Users of ``G_K``.
        n_items: Items of ``G_K``.
        probes: The latest probe table (kind, id, embedding).

    Returns:
        Role -> path of each file written (empty when a model cannot be run; logged).
    """
    from bcemb.models.graph_input import GraphInput
    from bcemb.models.io import load_model

    if latest == 0 or snapshot is None:
        return {}
    graph_input = GraphInput.build(
        snapshot, np.arange(snapshot.num_edges), num_users=n_users, num_items=n_items
    )
    kinds = np.asarray(probes.column("kind").to_pylist(), dtype=object)
    ids = probes.column("id")
    index = {
        "user": {str(v): r for r, v in enumerate(snapshot.user_ids[:n_users])},
        "item": {str(v): r for r, v in enumerate(snapshot.item_ids[:n_items])},
    }
    id_list = [str(v) for v in ids.to_pylist()]
    take = {
        k: np.array(
            [index[k][i] for i, kk in zip(id_list, kinds, strict=True) if kk == k], np.int64
        )
        for k in ("user", "item")
    }
    roles: dict[str, str] = {}
    for j in range(latest):
        try:
            model = load_model(run_dir / f"version_{j}" / "model.safetensors").eval()
            users, items = model(graph_input)
        except Exception as err:  # a model that cannot embed G_K: no same-graph probe, not a failed publish
            logger.warning("no same-graph probe of version %d: %s", j, err)
            return {}
        vectors = np.concatenate(
            [users.numpy()[take["user"]], items.numpy()[take["item"]]]
        ).astype(np.float32)
        order = np.concatenate([np.flatnonzero(kinds == "user"), np.flatnonzero(kinds == "item")])
        table = sio.embedding_table(
            kinds[order].astype(str), np.asarray(id_list, dtype=object)[order], vectors
        )
        name = f"same_graph/v{j}.parquet"
        sio.write_table(out / name, table, {"bcemb.version": str(j), "bcemb.graph": str(latest)})
        roles[ROLE.format(j=j)] = record(ROLE.format(j=j), name)
    return roles


@dataclass(frozen=True)
class HopCheck:
    """One version's chain error on the latest graph, against its budget.

    Attributes:
        version: ``j``.
        hops: ``K - j``.
        num_probes: Probe nodes compared.
        chain_error: Mean L2 distance between the chain's view and ``M_j(G_K)``.
        chain_relative: ``chain_error`` over the mean norm of ``M_j(G_K)``.
        published_relative: The published-probe relative error (chain plus drift), if known.
        drift_relative: ``published_relative - chain_relative``: the graph's share.
        budget: ``per_hop * hops``.
        over_budget: ``chain_relative > budget``.
    """

    version: int
    hops: int
    num_probes: int
    chain_error: float
    chain_relative: float
    published_relative: float
    drift_relative: float
    budget: float
    over_budget: bool


def chain_budget(
    store: Any, *, per_hop: float = DEFAULT_PER_HOP, published: dict[int, float] | None = None
) -> list[HopCheck]:
    """The chain's own error per version (same-graph probes of the latest publish) and its budget.

    Args:
        store: An open :class:`~bcemb.store.EmbeddingStore`.
        per_hop: Relative error allowed per hop.
        published: ``version -> relative error`` on the published probes (from ``check``).

    Returns:
        One entry per version with a same-graph probe (none for a store published without).
    """
    entry = store.manifest.versions[store.latest]
    out = []
    for j in range(store.latest):
        rel = entry.files.get(ROLE.format(j=j))
        if rel is None:
            continue
        path = sio.verify_file(store.root, rel, store.manifest.files[rel].sha256)
        table = sio.read_table(path)
        truth = sio.table_vectors(table, path).astype(np.float64)
        kinds = np.asarray(table.column("kind").to_pylist(), dtype=object)
        ids = np.asarray([str(v) for v in table.column("id").to_pylist()], dtype=object)
        dist, norm = [], []
        for kind in ("user", "item"):
            mask = kinds == kind
            if mask.any():
                z = np.asarray(store.get(list(ids[mask]), version=j, kind=kind), dtype=np.float64)
                dist.append(np.linalg.norm(z - truth[mask], axis=1))
                norm.append(np.linalg.norm(truth[mask], axis=1))
        d, n = np.concatenate(dist), np.concatenate(norm)
        hops = store.latest - j
        chain_rel = float(d.mean() / n.mean()) if n.mean() > 0 else float("nan")
        pub = (published or {}).get(j, float("nan"))
        budget = per_hop * hops
        out.append(
            HopCheck(
                version=j,
                hops=hops,
                num_probes=len(ids),
                chain_error=float(d.mean()),
                chain_relative=chain_rel,
                published_relative=pub,
                drift_relative=pub - chain_rel,
                budget=budget,
                over_budget=not chain_rel <= budget,
            )
        )
    return out


def recommendation(checks: list[HopCheck], store: Any) -> str | None:
    """A plain recommendation when a version's chain error is over its budget."""
    over = [c for c in checks if c.over_budget]
    if not over:
        return None
    worst = max(over, key=lambda c: c.chain_relative / c.budget if c.budget else float("inf"))
    oldest = min(store.versions)
    return (
        f"re-anchor: the chain's error to version {worst.version} ({worst.chain_relative:.1%} of the "
        f"norm over {worst.hops} hop(s)) exceeds its budget ({worst.budget:.1%}); publish a fresh "
        f"keep-all snapshot of version {oldest}, the oldest version still served (its real "
        f"vectors from M_{oldest}, while a run still has it), so that its consumers stop "
        f"depending on a {store.latest - oldest}-hop chain"
    )
