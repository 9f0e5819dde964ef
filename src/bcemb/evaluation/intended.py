"""The intended task's evaluator: validation Recall@K of a graph model (PROTOCOL section 5)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from bcemb.evaluation.metrics import recall_at_k
from bcemb.training.recommender import VersionData

__all__ = ["RecallEvaluator"]

logger = logging.getLogger(__name__)
_WARNED: set[tuple[int, tuple[int, ...]]] = set()


class RecallEvaluator:
    """Validation Recall@K of a graph model, excluding each user's training positives.

    Args:
        data: The version's tensors.
        ks: The K of Recall@K.
        primary_k: The K whose recall selects the best epoch.
    """

    def __init__(self, data: VersionData, ks: Sequence[int] = (10, 20, 50, 100), primary_k: int = 50) -> None:
        if primary_k not in ks:
            raise ValueError(f"primary_k={primary_k} is not among ks={tuple(ks)}")
        self.data = data
        self.ks = tuple(ks)
        self.primary = f"recall@{primary_k}"
        n_items = int(data.train_graph.num_items)
        trivial = tuple(k for k in self.ks if k >= n_items)
        if trivial and (n_items, trivial) not in _WARNED:
            # Own data with few items: every item is in the top K, so the metric says nothing.
            _WARNED.add((n_items, trivial))
            logger.warning(
                "Recall@%s ranks all %d items of version %d: it is 1 by construction and cannot "
                "compare methods; use smaller K (--set train.ks=5,10 --set train.primary_k=5)",
                ",".join(map(str, trivial)), n_items, data.k,
            )

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, float]:
        """``{"recall@K": value}`` for every K."""
        was_training = model.training
        model.eval()
        user_emb, item_emb = model(self.data.train_graph)
        model.train(was_training)
        d = self.data
        recall = recall_at_k(user_emb, item_emb, d.train_user, d.train_item, d.val_user, d.val_item, self.ks)
        return {f"recall@{k}": v for k, v in recall.items()}
