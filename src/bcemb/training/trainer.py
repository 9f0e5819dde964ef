"""The one training loop: an intended-task objective plus an optional alignment loss.

The loop is model- and task-agnostic: the objective computes the batch's task loss and the
embedding rows to align; the evaluator selects the best epoch. Joint methods add
``lam * L_align(B_k(z_k), z_{k-1})`` on those rows against the frozen previous model.
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from bcemb.losses import PreparedAlignment, prepare_alignment
from bcemb.training.checkpoint import LoopState, load_checkpoint, save_checkpoint
from bcemb.training.config import TrainConfig
from bcemb.training.distributed import average_buffers, average_gradients, average_scalar
from bcemb.training.objectives import Evaluator, Objective
from bcemb.training.recommender import VersionData
from bcemb.transforms.base import BackwardTransform
from bcemb.utils import deterministic, progress

logger = logging.getLogger(__name__)

__all__ = ["VersionData", "Alignment", "TrainOutcome", "train_model", "train_step", "fit_posthoc"]

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
    _prepared: PreparedAlignment | None = field(default=None, init=False, repr=False, compare=False)
    _prepared_key: tuple[int, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def batch_loss(self, z: Tensor, ids: Tensor | None, weight: Tensor | None = None) -> Tensor:
        """``loss(z, target[ids], transform, previous, weight)`` (without ``lam``; ids None: all rows).

        Same value and gradients; with linear links the parts fixed for the version (the
        multi-step factor, the targets times it) are computed once, not at every step
        (:func:`bcemb.losses.prepare_alignment`). Shapes: ``z [R, D_k]``, ``ids [R]``.
        """
        key = self._frozen_key()
        if key != self._prepared_key:
            self._prepared = prepare_alignment(self.loss, self.target, self.transform, self.previous)
            self._prepared_key = key
        if self._prepared is None:
            target = self.target if ids is None else self.target[ids]
            return self.loss(z, target, self.transform, self.previous, weight)
        return self._prepared(z, ids, self.transform, weight)

    def _frozen_key(self) -> tuple[int, ...]:
        # Storage and in-place version of every frozen tensor: the prepared parts are redone
        # if the targets or an older link are replaced or changed in place.
        frozen = itertools.chain([self.target], *(itertools.chain(t.parameters(), t.buffers()) for t in self.previous))
        return tuple(v for x in frozen for v in (x.data_ptr(), x._version))


@dataclass
class TrainOutcome:
    """Result of :func:`train_model`: the model (and transform) at the best epoch.

    Attributes:
        best_epoch: The selected epoch.
        metrics: The evaluator's metrics at that epoch.
        curve: One row per evaluation (epoch, loss, align, seconds since the loop started, metrics).
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
    checkpoint: str | Path | None = None,
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
            Early stopping (``config.patience``) is the same for every method: it counts
            evaluations without a better score and never stops within ``config.warmup_epochs``.
        show_progress: Progress bar (None: on when logging at INFO).
        desc: Progress-bar label.
        checkpoint: A file where the loop's state is saved at every evaluation; when it
            exists, training resumes from it (bit for bit the uninterrupted run).
    """
    with deterministic(config.deterministic):
        return _train_model(
            model, objective, evaluator, config, generator=generator, alignment=alignment,
            warmup_epochs=warmup_epochs, show_progress=show_progress, desc=desc,
            checkpoint=Path(checkpoint) if checkpoint is not None else None,
        )


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
    checkpoint: Path | None,
) -> TrainOutcome:
    params = list(model.parameters())
    transform = alignment.transform if alignment is not None else None
    if transform is not None and transform.trainable:
        params += list(transform.parameters())
    opt = torch.optim.Adam(params, lr=config.lr)
    state = LoopState(epoch=0)
    if checkpoint is not None:
        resumed = load_checkpoint(checkpoint, model, transform, opt, generator)
        if resumed is not None:
            state = resumed
            logger.info("%s: resuming after epoch %d from %s", desc, state.epoch, checkpoint)
    start = time.perf_counter()
    epochs = range(state.epoch + 1, config.epochs + 1) if not state.finished else range(0)
    bar = progress(epochs, desc=desc, show=show_progress, leave=False, initial=state.epoch, total=config.epochs)
    for epoch in bar:
        model.train()
        tot = tot_align = 0.0
        steps = 0
        for batch in objective.batches(config.batch_size, generator):
            loss, align = train_step(model, objective, batch, opt, alignment)
            tot += loss
            tot_align += align
            steps += 1
        if epoch % config.eval_every and epoch != config.epochs:
            continue
        metrics = evaluator(model)
        score = metrics[evaluator.primary]
        row = {
            "epoch": epoch, "loss": average_scalar(tot / max(steps, 1)),
            "align": average_scalar(tot_align / max(steps, 1)),
            "seconds": time.perf_counter() - start, **metrics,
        }
        state.curve.append(row)
        state.epoch = epoch
        bar.set_postfix(loss=f"{row['loss']:.4f}", r=f"{score:.4f}")
        # Selection: the best evaluation after this method's warm-up (the paper: joint
        # methods only after epoch 50); the last epoch is always eligible.
        eligible = epoch > warmup_epochs or epoch == config.epochs
        if eligible and (state.best_score is None or score > state.best_score):
            state.best_score, state.best_epoch, state.best_metrics = score, epoch, metrics
            state.best_model = copy.deepcopy(model.state_dict())
            state.best_transform = copy.deepcopy(transform.state_dict()) if transform is not None else None
        # Stopping is one rule for every method (issue 9: a joint method's warm-up must not
        # let it train longer than the others): patience counts evaluations without a better
        # score on the whole curve, and no run stops within config.warmup_epochs.
        if state.best_seen is None or score > state.best_seen:
            state.best_seen, state.bad_evals = score, 0
        else:
            state.bad_evals += 1
        state.finished = (
            config.patience is not None and state.bad_evals >= config.patience
            and epoch > max(config.warmup_epochs, warmup_epochs) and state.best_score is not None
        )
        if checkpoint is not None:
            save_checkpoint(checkpoint, state, model, transform, opt, generator)
        if state.finished:
            break
    assert state.best_model is not None  # the last epoch is always evaluated
    model.load_state_dict(state.best_model)
    if transform is not None and state.best_transform is not None:
        transform.load_state_dict(state.best_transform)
    model.eval()
    return TrainOutcome(
        best_epoch=state.best_epoch, metrics=state.best_metrics, curve=state.curve,
        seconds=time.perf_counter() - start, epochs_run=state.epoch,
    )


def train_step(
    model: nn.Module,
    objective: Objective,
    batch: object,
    opt: torch.optim.Optimizer,
    alignment: Alignment | None = None,
) -> tuple[float, float]:
    """One optimisation step of the loop: task loss (+ ``lam`` x alignment), backward, update.

    Returns ``(total loss, alignment loss)`` as floats (the alignment loss is 0 without one).
    """
    out = objective.step(model, batch, with_rows=alignment is not None)
    loss = out.loss
    align_value = 0.0
    if alignment is not None:
        if out.z is None or out.ids is None:
            raise ValueError(f"{type(objective).__name__}.step returned no rows to align")
        align = out.align_scale * alignment.batch_loss(out.z, out.ids, out.weight)
        loss = loss + alignment.lam * align
        align_value = float(align.detach())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    # Data-parallel (torch.distributed initialised): average gradients before the update and
    # BatchNorm statistics after it, so every replica stays the same model. No-ops otherwise.
    average_gradients([p for group in opt.param_groups for p in group["params"]])
    opt.step()
    average_buffers(model)
    return float(loss.detach()), align_value


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
