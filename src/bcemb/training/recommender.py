"""The paper's intended-task objective: BPR on user-item graphs (its evaluator, Recall@K, is
:class:`bcemb.evaluation.intended.RecallEvaluator`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bcemb.data.sampling import BPRSampler
from bcemb.losses import bpr_loss
from bcemb.models.graph_input import GraphInput
from bcemb.training.objectives import StepOutput

__all__ = ["VersionData", "BPRObjective"]


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


class BPRObjective:
    """BPR link prediction on a graph model ``model(graph) -> (user_emb, item_emb)``.

    Users are sampled uniformly, one negative per positive (never a training positive), and
    every step recomputes all node embeddings on the full training graph (the paper's
    setting). Row ids are node ids: users first, then items.

    Args:
        data: The version's tensors.
        weight_decay: Weight on the batch-embedding norm in the BPR loss.
    """

    def __init__(self, data: VersionData, *, weight_decay: float = 0.01) -> None:
        self.data = data
        self.weight_decay = weight_decay
        self._sampler: BPRSampler | None = None

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """One epoch of ``(user, pos, neg)`` index triples."""
        if self._sampler is None or self._sampler.generator is not generator:
            d = self.data
            self._sampler = BPRSampler(
                d.train_user.cpu().numpy(), d.train_item.cpu().numpy(), d.train_graph.num_items,
                generator=generator,
            )
        device = self.data.train_user.device
        for user, pos, neg in self._sampler.epoch(batch_size):
            yield user.to(device), pos.to(device), neg.to(device)

    def step(self, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor], *, with_rows: bool = False) -> StepOutput:
        """BPR on the batch; the rows are the batch's distinct users and items."""
        user, pos, neg = batch
        user_emb, item_emb = model(self.data.train_graph)
        loss = bpr_loss(user_emb[user], item_emb[pos], item_emb[neg], weight_decay=self.weight_decay)
        if not with_rows:
            return StepOutput(loss)
        # The alignment over the batch's users, positive and negative items equals the loss
        # over its distinct nodes weighted by multiplicity: far fewer rows through B_k when
        # the batch is large next to the graph.
        n_users = self.data.train_graph.num_users
        nodes = torch.cat([user, pos + n_users, neg + n_users])
        ids, counts = torch.unique(nodes, return_counts=True)
        z = torch.cat([user_emb, item_emb])[ids]
        return StepOutput(loss, z, ids, counts.to(z.dtype))

    @torch.no_grad()
    def embed(self, model: nn.Module) -> Tensor:
        """All node embeddings on the training graph (eval mode). ``[U + I, D]``."""
        was_training = model.training
        model.eval()
        out = torch.cat(model(self.data.train_graph))
        model.train(was_training)
        return out
