"""Joint methods: ``M_k`` and ``B_k`` learned together with ``L_k + lam * L_align``."""

from __future__ import annotations

from bcemb.losses import multi_step_alignment, single_step_alignment
from bcemb.methods.base import Method
from bcemb.methods.parts import JointFit
from bcemb.transforms import LinearTransform, TruncateTransform

__all__ = ["Joint", "JointNoTrans", "JointLinSLoss", "BCAligner"]


class Joint(Method):
    """Train ``M_k`` fresh with the alignment loss against the frozen ``M_{k-1}`` on the batch's
    rows (users, positive and negative items); keep the best epoch after the warm-up."""

    fitting = JointFit()


class JointNoTrans(Joint):
    """Joint-NoTrans: ``B_k`` keeps the first ``D_{k-1}`` coordinates; single-step loss."""

    name = "joint-notrans"
    label = "Joint-NoTrans"
    order = 6
    style = {"color": "tab:purple", "marker": "P", "linestyle": "-."}
    transform = TruncateTransform
    alignment = staticmethod(single_step_alignment)


class JointLinSLoss(Joint):
    """Joint-Lin-SLoss: linear ``B_k``, single-step loss."""

    name = "joint-lin-sloss"
    label = "Joint-Lin-SLoss"
    order = 7
    style = {"color": "tab:green", "marker": "d", "linestyle": "-."}
    transform = LinearTransform
    alignment = staticmethod(single_step_alignment)


class BCAligner(Joint):
    r"""BC-Aligner (Joint-Lin-MLoss, Hu et al. KDD 2022): linear ``B_k`` with the multi-step
    loss, which penalises the error ``B_k(z_k) - z_{k-1}`` as every older transform amplifies it:
    ``1/k sum_j ||W_{j+1} ... W_{k-1} (B_k z_k - z_{k-1})||^2``."""

    name = "bc-aligner"
    label = "BC-Aligner"
    order = 8
    style = {"color": "tab:blue", "marker": "o", "linestyle": "-", "linewidth": 2.2}
    transform = LinearTransform
    alignment = staticmethod(multi_step_alignment)
