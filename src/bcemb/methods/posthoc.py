"""Post-Lin-SLoss and Post-Lin-MLoss: fit a linear ``B_k`` after training ``M_k`` alone."""

from __future__ import annotations

from bcemb.losses import multi_step_alignment, single_step_alignment
from bcemb.methods.base import Method
from bcemb.methods.parts import PostHocFit
from bcemb.transforms import LinearTransform

__all__ = ["PostHoc", "PostLinSLoss", "PostLinMLoss"]


class PostHoc(Method):
    """``M_k`` is the independent (Non-BC) model; a linear ``B_k`` is then fitted on the frozen
    embeddings of every row of version k's training inputs against ``M_{k-1}``'s, with
    full-batch Adam until the loss stalls (:func:`bcemb.training.fit_posthoc`)."""

    transform = LinearTransform
    fitting = PostHocFit()


class PostLinSLoss(PostHoc):
    """Post-Lin-SLoss: single-step alignment loss."""

    name = "post-lin-sloss"
    label = "Post-Lin-SLoss"
    order = 4
    style = {"color": "tab:orange", "marker": "s", "linestyle": "--"}
    alignment = staticmethod(single_step_alignment)


class PostLinMLoss(PostHoc):
    """Post-Lin-MLoss: multi-step alignment loss."""

    name = "post-lin-mloss"
    label = "Post-Lin-MLoss"
    order = 5
    style = {"color": "tab:olive", "marker": "D", "linestyle": "--"}
    alignment = staticmethod(multi_step_alignment)
