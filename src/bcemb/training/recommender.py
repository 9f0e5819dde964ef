"""The paper's intended-task objective: BPR on user-item graphs (its evaluator, Recall@K, is
:class:`bcemb.evaluation.intended.RecallEvaluator`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bcemb.data.sampling import BPRSampler
from bcemb.losses import BATCH_ROLES, bpr_loss_rows
from bcemb.models.graph_input import GraphInput
from bcemb.models.sage import SageEncoder
from bcemb.models.sampled_plan import build_sampled_plan
from bcemb.training.distributed import shard, world
from bcemb.training.objectives import StepOutput

__all__ = ["VersionData", "BPRObjective", "TRAIN_MODES", "SAMPLED_ABOVE_EDGES", "resolve_mode"]


@dataclass
class VersionData:
    """Tensors of version ``k`` (see :meth:`bcemb.experiments.context.ExperimentData.version`).

    Attributes:
        k: The version.
        train_graph: Training edges of the split, nodes present by ``t_{k+1}``.
        embed_graph: ``E_k`` with nodes present by ``t_{k+1}``: the graph "at t_k" whose
            embeddings are published and handed to consumers.
        train_user, train_item: Training edges. Shape ``[E_train]``.
        val_user, val_item: Validation edges. Shape ``[E_val]``.
    """

    k: int
    train_graph: GraphInput
    embed_graph: GraphInput
    train_user: Tensor
    train_item: Tensor
    val_user: Tensor
    val_item: Tensor

    def to(self, device: torch.device | str) -> VersionData:
        """A copy on ``device``."""
        return VersionData(
            self.k,
            self.train_graph.to(device),
            self.embed_graph.to(device),
            *(t.to(device) for t in (self.train_user, self.train_item, self.val_user, self.val_item)),
        )


#: Training modes of :class:`BPRObjective` (``train.mode``).
TRAIN_MODES = ("full", "sampled", "auto")
#: ``auto`` trains in sampled mode above this many training edges (a Grocery-sized graph, 1.1M
#: edges, is sampled; MovieLens-100K, 100k edges, is not: its full-graph step is cheaper than
#: sampling once a batch touches most nodes).
SAMPLED_ABOVE_EDGES = 500_000


def resolve_mode(mode: str, num_train_edges: int) -> str:
    """``full`` or ``sampled``: ``mode`` itself, or for ``auto`` the choice by graph size."""
    if mode not in TRAIN_MODES:
        raise ValueError(f"train mode must be one of {TRAIN_MODES}, got {mode!r}")
    if mode == "auto":
        return "sampled" if num_train_edges > SAMPLED_ABOVE_EDGES else "full"
    return mode


class BPRObjective:
    """BPR link prediction on a graph model ``model(graph) -> (user_emb, item_emb)``.

    Users are sampled uniformly, one negative per positive (never a training positive). How
    a batch's embeddings are computed is the *mode*: ``full`` recomputes every node on the
    full training graph (the paper's setting); ``sampled`` embeds only the batch's distinct
    nodes through neighbour-sampled computation graphs (GraphSAGE minibatches, ``fanouts``
    neighbours per hop, drawn with the epoch's generator), which needs a model with
    ``run_plan`` (:class:`~bcemb.models.sage.SageEncoder`); ``auto`` picks by graph size
    (:data:`SAMPLED_ABOVE_EDGES`). Evaluation and :meth:`embed` always run on the full graph
    (layer by layer, no gradients). Row ids are node ids: users first, then items.

    Args:
        data: The version's tensors.
        weight_decay: Weight on the batch-embedding norm in the BPR loss.
        mode: ``full``, ``sampled`` or ``auto``.
        fanouts: Neighbours kept per hop in sampled mode, seeds' hop first (``-1``: all);
            padded with its last value to the model's depth.
    """

    def __init__(
        self,
        data: VersionData,
        *,
        weight_decay: float = 0.01,
        mode: str = "full",
        fanouts: tuple[int, ...] = (25,),
    ) -> None:
        self.data = data
        self.weight_decay = weight_decay
        self.mode = resolve_mode(mode, len(data.train_user))
        self.fanouts = tuple(fanouts)
        self._sampler: BPRSampler | None = None
        self._generator: torch.Generator | None = None

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """One epoch of ``(user, pos, neg)`` index triples (sampled mode: the draw's generator too)."""
        if self._sampler is None or self._sampler.generator is not generator:
            d = self.data
            self._sampler = BPRSampler(
                d.train_user.cpu().numpy(), d.train_item.cpu().numpy(), d.train_graph.num_items,
                generator=generator,
            )
        if self.mode == "sampled":
            # Neighbour samples come from a generator of their own, seeded by one draw of the
            # epoch's generator: every data-parallel rank then draws the same batches (the
            # same consumption of ``generator``) and its own neighbour samples (+ rank).
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            self._generator = torch.Generator().manual_seed(seed + world()[0])
        device = self.data.train_user.device
        for user, pos, neg in self._sampler.epoch(batch_size):
            # Data-parallel: this rank's slice of the batch (the whole batch on one process).
            user, pos, neg = shard((user, pos, neg))
            yield user.to(device), pos.to(device), neg.to(device)

    def _rows(self, model: nn.Module, ids: Tensor) -> Tensor:
        """Embeddings of the distinct nodes ``ids`` (sorted), computed as the mode says."""
        graph = self.data.train_graph
        if self.mode == "sampled":
            run_plan = getattr(model, "run_plan", None)
            if run_plan is None:
                raise TypeError(f"sampled training needs a model with run_plan, got {type(model).__name__}")
            layers = len(model.convs)
            return run_plan(build_sampled_plan(graph, ids, layers, self.fanouts, self._generator))
        # index_select: its backward is an index_add into the rows, where advanced indexing's
        # is a sort-based index_put under deterministic algorithms (a sort per step).
        # SageEncoder.embed gives all rows as one tensor: spares forward's split and a cat
        rows = model.embed(graph) if isinstance(model, SageEncoder) else torch.cat(model(graph))
        return rows.index_select(0, ids)

    def step(self, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor], *, with_rows: bool = False) -> StepOutput:
        """BPR on the batch; the rows are the batch's distinct users and items."""
        user, pos, neg = batch
        n_users = self.data.train_graph.num_users
        nodes = torch.cat([user, pos + n_users, neg + n_users])
        # Everything is computed on the batch's distinct nodes: the embeddings once per node,
        # the BPR weight decay as a sum weighted by multiplicity, and the alignment over them
        # equals the loss over the batch's users, positive and negative items.
        ids, inverse, counts = torch.unique(nodes, return_inverse=True, return_counts=True)
        z = self._rows(model, ids)
        loss = bpr_loss_rows(z, inverse, counts, len(user), weight_decay=self.weight_decay)
        if not with_rows:
            return StepOutput(loss)
        # The reference adds one MSE per role (B rows each): BATCH_ROLES x the mean over 3B rows.
        return StepOutput(loss, z, ids, counts.to(z.dtype), align_scale=BATCH_ROLES)

    @torch.no_grad()
    def embed(self, model: nn.Module) -> Tensor:
        """All node embeddings on the training graph (eval mode). ``[U + I, D]``."""
        was_training = model.training
        model.eval()
        out = torch.cat(model(self.data.train_graph))
        model.train(was_training)
        return out
