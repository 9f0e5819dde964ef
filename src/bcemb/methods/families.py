"""Extra methods with the other transform families (issue 10): not in the paper's Table 3.

Each one is a paper method with another ``B_k`` family; everything else (init, loss,
fitting) is declared by the class it extends.
"""

from __future__ import annotations

from bcemb.losses import single_step_alignment
from bcemb.methods.joint import BCAligner
from bcemb.methods.posthoc import PostHoc
from bcemb.transforms import LowRankTransform, OrthogonalTransform, ResidualMLPTransform

__all__ = ["BCAlignerOrth", "BCAlignerLowRank", "BCAlignerMLP", "PostProcrustes"]


class BCAlignerOrth(BCAligner):
    """BC-Aligner with a (semi-)orthogonal ``B_k``: links cannot amplify older errors."""

    name = "bc-aligner-orth"
    label = "BC-Aligner-Orth"
    order = 9
    paper = False
    style = {"color": "tab:cyan", "marker": "v", "linestyle": "-"}
    transform = OrthogonalTransform


class BCAlignerLowRank(BCAligner):
    """BC-Aligner with a low-rank plus identity-padding ``B_k`` (rank 16)."""

    name = "bc-aligner-lowrank"
    label = "BC-Aligner-LowRank"
    order = 10
    paper = False
    style = {"color": "tab:pink", "marker": "^", "linestyle": "-"}
    transform = LowRankTransform


class BCAlignerMLP(BCAligner):
    """BC-Aligner with a small residual MLP ``B_k`` (the paper's open non-linear question)."""

    name = "bc-aligner-mlp"
    label = "BC-Aligner-MLP"
    order = 11
    paper = False
    style = {"color": "tab:brown", "marker": "X", "linestyle": "-"}
    transform = ResidualMLPTransform


class PostProcrustes(PostHoc):
    """Non-BC's ``M_k``, then the closed-form orthogonal Procrustes ``B_k`` (single-step)."""

    name = "post-procrustes"
    label = "Post-Procrustes"
    order = 12
    paper = False
    closed_form = True
    style = {"color": "tab:gray", "marker": "*", "linestyle": ":"}
    transform = OrthogonalTransform
    alignment = staticmethod(single_step_alignment)
