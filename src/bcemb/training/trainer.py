"""The one training loop: an intended-task objective plus an optional alignment loss.

The loop is model- and task-agnostic: the objective computes the batch's task loss and the
embedding rows to align; the evaluator selects the best epoch. Joint methods add
``lam * L_align(B_k(z_k), z_{k-1})`` on those rows against the frozen previous model.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bcemb.training.config import TrainConfig
from bcemb.training.objectives import Evaluator, Objective
from bcemb.training.recommender import VersionData
from bcemb.transforms.base import BackwardTransform
from bcemb.utils import progress

logger = logging.getLogger(__name__)

__all__ = ["VersionData", "Alignment", "TrainOutcome", "train_model", "fit_posthoc"]

AlignmentLoss = Callable[..., Tensor]  # (z_k, z_prev, transform, previous, weight=None) -> loss


@dataclass
class Alignment:
    """What a joint method adds to the loss: ``lam * loss(B_k(z_k), z_{k-1})`` on batch rows.

    Attributes:
        transform: ``B_k`` (trained with the model when it has parameters).
        loss: single- or multi-step alignment loss.
        previous: Frozen ``B_1 .. B_{k-1}`` (oldest first).
        target: Frozen ``M_{k-1}`` embeddings of every row (the objective's ``embed``).
            Shape ``[N, D_{k-1}]``.
        lam: The weight lambda.
    """

    transform: BackwardTransform
    loss: AlignmentLoss
    previous: Sequence[BackwardTransform]
    target: Tensor
    lam: float


@dataclass
class TrainOutcome:
    """Result of :func:`train_model`: the model (and transform) at the best epoch.

    Attributes:
        best_epoch: The selected epoch.
        metrics: The evaluator's metrics at that epoch.
        curve: One row per evaluation (epoch, loss, align, metrics).
        seconds: Wall time.
        epochs_run: Epochs actually run (early stopping may end sooner).
    """

    best_epoch: int
    metrics: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    epochs_run: int = 0

    @property
    def recall(self) -> dict[int, float]:
        """``{K: Recall@K}`` from ``recall@K`` metrics (the recommender task's view)."""
        return recall_view(self.metrics)


def recall_view(metrics: dict[str, float]) -> dict[int, float]:
    """``{K: value}`` of the ``recall@K`` entries of a metrics dict."""
    return {int(name.split("@", 1)[1]): v for name, v in metrics.items() if name.startswith("recall@")}


def train_model(
    model: nn.Module,
    objective: Objective,
    evaluator: Evaluator,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    alignment: Alignment | None = None,
    warmup_epochs: int = 0,
    show_progress: bool | None = None,
    desc: str = "train",
) -> TrainOutcome:
    """Train ``model`` (and ``alignment.transform``) in place; restore the best epoch.

    Args:
        model: ``M_k``.
        objective: The intended task (batches, loss, rows to align).
        evaluator: Validation metrics; ``evaluator.primary`` selects the best epoch.
        config: Epochs, batch size, learning rate, evaluation schedule, patience.
        generator: The only source of randomness for batches.
        alignment: The joint alignment term (None: the task loss alone).
        warmup_epochs: Epochs not eligible as the best (joint methods let the alignment settle).
        show_progress: Progress bar (None: on when logging at INFO).
        desc: Progress-bar label.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    try:
        return _train_model(
            model, objective, evaluator, config, generator=generator, alignment=alignment,
            warmup_epochs=warmup_epochs, show_progress=show_progress, desc=desc,
        )
    finally:
        torch.use_deterministic_algorithms(previous)


def _train_model(
    model: nn.Module,
    objective: Objective,
    evaluator: Evaluator,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    alignment: Alignment | None,
    warmup_epochs: int,
    show_progress: bool | None,
    desc: str,
) -> TrainOutcome:
    params = list(model.parameters())
    if alignment is not None and alignment.transform.trainable:
        params += list(alignment.transform.parameters())
    opt = torch.optim.Adam(params, lr=config.lr)
    best: tuple[float, int, dict, dict | None, dict[str, float]] | None = None
    curve: list[dict[str, float]] = []
    bad_evals = 0
    start = time.perf_counter()
    epoch = 0
    bar = progress(range(1, config.epochs + 1), desc=desc, show=show_progress, leave=False)
    for epoch in bar:
        model.train()
        tot = tot_align = 0.0
        steps = 0
        for batch in objective.batches(config.batch_size, generator):
            out = objective.step(model, batch, with_rows=alignment is not None)
            loss = out.loss
            if alignment is not None:
                assert out.z is not None and out.ids is not None, "the objective returned no rows to align"
                align = alignment.loss(
                    out.z, alignment.target[out.ids], alignment.transform, alignment.previous, out.weight
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
        metrics = evaluator(model)
        score = metrics[evaluator.primary]
        row = {"epoch": epoch, "loss": tot / max(steps, 1), "align": tot_align / max(steps, 1), **metrics}
        curve.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", r=f"{score:.4f}")
        if epoch <= warmup_epochs and epoch != config.epochs:
            continue
        if best is None or score > best[0]:
            tstate = copy.deepcopy(alignment.transform.state_dict()) if alignment else None
            best = (score, epoch, copy.deepcopy(model.state_dict()), tstate, metrics)
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
        best_epoch=best[1], metrics=best[4], curve=curve, seconds=time.perf_counter() - start,
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
    """Fit ``B_k`` on frozen embeddings of every row: full-batch Adam until the loss stalls.

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
