"""Post-Lin-SLoss and Post-Lin-MLoss: fit a linear ``B_k`` after training ``M_k`` alone."""

from __future__ import annotations

from typing import ClassVar

from bcemb.methods.base import Method

__all__ = ["PostHoc", "PostLinSLoss", "PostLinMLoss"]


class PostHoc(Method):
    """``M_k`` is the independent (Non-BC) model; a linear ``B_k`` is then fitted on the frozen
    embeddings of all nodes of version k's training graph against ``M_{k-1}``'s, with
    full-batch Adam until the loss stalls (:func:`bcemb.training.fit_posthoc`)."""

    transform_kind: ClassVar[str] = "linear"
    fitting = "posthoc"


class PostLinSLoss(PostHoc):
    """Post-Lin-SLoss: single-step alignment loss."""

    name = "post-lin-sloss"
    alignment = "single"


class PostLinMLoss(PostHoc):
    """Post-Lin-MLoss: multi-step alignment loss."""

    name = "post-lin-mloss"
    alignment = "multi"
