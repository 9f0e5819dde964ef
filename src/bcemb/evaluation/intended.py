"""The intended task's evaluator: validation Recall@K of a graph model (PROTOCOL section 5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bcemb.evaluation.metrics import recall_at_k
from bcemb.training.recommender import VersionData

__all__ = ["RecallEvaluator"]


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
