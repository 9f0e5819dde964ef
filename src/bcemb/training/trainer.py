"""The one training loop: BPR on the intended task plus an optional alignment loss."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bcemb.data.sampling import BPRSampler
from bcemb.evaluation.metrics import recall_at_k
from bcemb.losses import bpr_loss
from bcemb.models.graph_input import GraphInput
from bcemb.models.sage import SageEncoder
from bcemb.training.config import TrainConfig
from bcemb.transforms.base import BackwardTransform
from bcemb.utils import progress

logger = logging.getLogger(__name__)

__all__ = ["VersionData", "Alignment", "TrainOutcome", "train_model", "evaluate_model", "fit_posthoc"]

AlignmentLoss = Callable[..., Tensor]  # (z_k, z_prev, transform, previous, weight=None) -> loss


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


@dataclass
class Alignment:
    """What a joint method adds to the loss: ``lam * loss(B_k(z_k), z_{k-1})`` on batch nodes.

    Attributes:
        transform: ``B_k`` (trained with the model when it has parameters).
        loss: single- or multi-step alignment loss.
        previous: Frozen ``B_1 .. B_{k-1}`` (oldest first).
        prev_user, prev_item: Frozen ``M_{k-1}`` embeddings on this version's training graph.
        lam: The weight lambda.
    """

    transform: BackwardTransform
    loss: AlignmentLoss
    previous: Sequence[BackwardTransform]
    prev_user: Tensor
    prev_item: Tensor
    lam: float


@dataclass
class TrainOutcome:
    """Result of :func:`train_model`: the model (and transform) at the best epoch."""

    best_epoch: int
    recall: dict[int, float]
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    epochs_run: int = 0


@torch.no_grad()
def evaluate_model(model: SageEncoder, data: VersionData, ks: Sequence[int]) -> dict[int, float]:
    """Validation Recall@K of ``model`` on version ``data.k``."""
    was_training = model.training
    model.eval()
    user_emb, item_emb = model(data.train_graph)
    model.train(was_training)
    return recall_at_k(
        user_emb, item_emb, data.train_user, data.train_item, data.val_user, data.val_item, ks
    )


def train_model(
    model: SageEncoder,
    data: VersionData,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    alignment: Alignment | None = None,
    warmup_epochs: int = 0,
    show_progress: bool | None = None,
    desc: str = "train",
) -> TrainOutcome:
    """Train ``model`` (and ``alignment.transform``) in place; restore the best epoch.

    Every step recomputes all node embeddings on the full training graph (the paper's
    setting), takes BPR on the batch and, for joint methods, the alignment loss on the
    batch's users, positive and negative items against the frozen previous model.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    try:
        return _train_model(
            model, data, config, generator=generator, alignment=alignment,
            warmup_epochs=warmup_epochs, show_progress=show_progress, desc=desc,
        )
    finally:
        torch.use_deterministic_algorithms(previous)


def _train_model(
    model: SageEncoder,
    data: VersionData,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    alignment: Alignment | None,
    warmup_epochs: int,
    show_progress: bool | None,
    desc: str,
) -> TrainOutcome:
    sampler = BPRSampler(
        data.train_user.cpu().numpy(),
        data.train_item.cpu().numpy(),
        data.train_graph.num_items,
        generator=generator,
    )
    params = list(model.parameters())
    if alignment is not None and alignment.transform.trainable:
        params += list(alignment.transform.parameters())
    opt = torch.optim.Adam(params, lr=config.lr)
    device = data.train_user.device
    best: tuple[float, int, dict, dict | None, dict[int, float]] | None = None
    curve: list[dict[str, float]] = []
    bad_evals = 0
    n_users = data.train_graph.num_users
    prev_all = torch.cat([alignment.prev_user, alignment.prev_item]) if alignment is not None else None
    start = time.perf_counter()
    epoch = 0
    bar = progress(range(1, config.epochs + 1), desc=desc, show=show_progress, leave=False)
    for epoch in bar:
        model.train()
        tot = tot_align = 0.0
        steps = 0
        for user, pos, neg in sampler.epoch(config.batch_size):
            user, pos, neg = user.to(device), pos.to(device), neg.to(device)
            user_emb, item_emb = model(data.train_graph)
            u, p, n = user_emb[user], item_emb[pos], item_emb[neg]
            loss = bpr_loss(u, p, n, weight_decay=config.weight_decay)
            if alignment is not None:
                # The loss over the batch's users, positive and negative items equals the
                # loss over its distinct nodes weighted by multiplicity: far fewer rows
                # through B_k when the batch is large next to the graph.
                nodes = torch.cat([user, pos + n_users, neg + n_users])
                uniq, counts = torch.unique(nodes, return_counts=True)
                z_k = torch.cat([user_emb, item_emb])[uniq]
                align = alignment.loss(
                    z_k, prev_all[uniq], alignment.transform, alignment.previous, counts.to(z_k.dtype)
                )
                loss = loss + alignment.lam * align
                tot_align += float(align.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            steps += 1
        if epoch % config.eval_every and epoch != config.epochs:
            continue
        recall = evaluate_model(model, data, config.ks)
        score = recall[config.primary_k]
        row = {"epoch": epoch, "loss": tot / steps, "align": tot_align / steps}
        row.update({f"recall@{k}": v for k, v in recall.items()})
        curve.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", r=f"{score:.4f}")
        if epoch <= warmup_epochs and epoch != config.epochs:
            continue
        if best is None or score > best[0]:
            tstate = copy.deepcopy(alignment.transform.state_dict()) if alignment else None
            best = (score, epoch, copy.deepcopy(model.state_dict()), tstate, recall)
            bad_evals = 0
        else:
            bad_evals += 1
            if config.patience is not None and bad_evals >= config.patience:
                break
    assert best is not None  # the last epoch is always evaluated
    model.load_state_dict(best[2])
    if alignment is not None and best[3] is not None:
        alignment.transform.load_state_dict(best[3])
    model.eval()
    return TrainOutcome(
        best_epoch=best[1], recall=best[4], curve=curve, seconds=time.perf_counter() - start,
        epochs_run=epoch,
    )


def fit_posthoc(
    transform: BackwardTransform,
    z_k: Tensor,
    z_prev: Tensor,
    loss_fn: AlignmentLoss,
    previous: Sequence[BackwardTransform],
    config: TrainConfig,
) -> list[float]:
    """Fit ``B_k`` on frozen embeddings of every node: full-batch Adam until the loss stalls.

    Stops after ``posthoc_steps`` or when 100 steps improve the loss by less than
    ``posthoc_tol`` (relative). Returns the loss every 100 steps.
    """
    if not transform.trainable:
        return []
    opt = torch.optim.Adam(transform.parameters(), lr=config.posthoc_lr)
    z_k, z_prev = z_k.detach(), z_prev.detach()
    history: list[float] = []
    last = float("inf")
    for step in range(config.posthoc_steps):
        loss = loss_fn(z_k, z_prev, transform, previous)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 99:
            cur = float(loss.detach())
            history.append(cur)
            if last - cur < config.posthoc_tol * abs(last):
                break
            last = cur
    return history
