"""Joint methods: ``M_k`` and ``B_k`` learned together with ``L_k + lam * L_align``."""

from __future__ import annotations

from bcemb.methods.base import Method

__all__ = ["Joint", "JointNoTrans", "JointLinSLoss", "BCAligner"]


class Joint(Method):
    """Train ``M_k`` fresh with the alignment loss against the frozen ``M_{k-1}`` on the batch's
    users, positive and negative items; keep the best epoch after the warm-up."""

    fitting = "joint"


class JointNoTrans(Joint):
    """Joint-NoTrans: ``B_k`` keeps the first ``D_{k-1}`` coordinates; single-step loss."""

    name = "joint-notrans"
    transform_kind = "truncate"
    alignment = "single"


class JointLinSLoss(Joint):
    """Joint-Lin-SLoss: linear ``B_k``, single-step loss."""

    name = "joint-lin-sloss"
    transform_kind = "linear"
    alignment = "single"


class BCAligner(Joint):
    r"""BC-Aligner (Joint-Lin-MLoss, Hu et al. KDD 2022): linear ``B_k`` with the multi-step
    loss, which penalises the error ``B_k(z_k) - z_{k-1}`` as every older transform amplifies it:
    ``1/k sum_j ||W_{j+1} ... W_{k-1} (B_k z_k - z_{k-1})||^2``."""

    name = "bc-aligner"
    transform_kind = "linear"
    alignment = "multi"
