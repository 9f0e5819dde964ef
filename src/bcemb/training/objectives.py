"""The two objects the training loop takes: the intended-task objective and its evaluator.

The loop (:func:`bcemb.training.train_model`) knows nothing of graphs, users or items: an
objective yields batches, computes a batch's task loss from the model and hands back the
embedding rows that the alignment loss should see (with their global row ids); an evaluator
scores the model on validation data. BPR + Recall@K on user-item graphs is one such pair
(:mod:`bcemb.training.recommender`); any other model and task can bring its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = ["StepOutput", "Objective", "Evaluator"]


@dataclass
class StepOutput:
    """What one training step of an objective produces.

    Attributes:
        loss: The intended-task loss of the batch (a scalar with a graph to the parameters).
        z: Embedding rows of the batch for the alignment loss. Shape ``[R, D_k]``; None when
            the caller did not ask for them.
        ids: Global row ids of ``z`` (indices into :meth:`Objective.embed`'s output). ``[R]``.
        weight: Optional row weights (e.g. multiplicities of repeated rows). ``[R]``.
        align_scale: The batch's alignment term is this times the (weighted) mean of the
            per-row alignment loss. BPR batches use 3, one mean squared error per node role
            (users, positive items, negative items) as the reference implementation sums
            them, so that the paper's ``lambda`` means what it meant there.
    """

    loss: Tensor
    z: Tensor | None = None
    ids: Tensor | None = None
    weight: Tensor | None = None
    align_scale: float = 1.0


@runtime_checkable
class Objective(Protocol):
    """An intended task ``L_k`` that trains an embedding model."""

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterable[Any]:
        """One epoch of batches, drawn with ``generator`` only (reproducibility)."""
        ...

    def step(self, model: nn.Module, batch: Any, *, with_rows: bool = False) -> StepOutput:
        """The batch's loss; with ``with_rows`` also the rows to align (``z``, ``ids``)."""
        ...

    def embed(self, model: nn.Module) -> Tensor:
        """Every row the alignment can refer to, in id order (eval mode). ``[N, D]``."""
        ...


@runtime_checkable
class Evaluator(Protocol):
    """Validation metrics of a model; ``primary`` names the one that selects the best epoch."""

    primary: str

    def __call__(self, model: nn.Module) -> dict[str, float]:
        """Metric name -> value (higher is better for ``primary``)."""
        ...
