"""The eight methods of the paper behind one registry (keys are the paper's labels).

Each method declares its parts (init, transform, alignment loss, fitting) and how it is shown
(label, order, plot style) once, on its class; reports and the benchmark read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bcemb.methods.base import Method, MethodContext, ModelCache, VersionArtifact
from bcemb.methods.baselines import FinetuneM0, FixM0, NonBC
from bcemb.methods.families import BCAlignerLowRank, BCAlignerMLP, BCAlignerOrth, PostProcrustes
from bcemb.methods.joint import BCAligner, Joint, JointLinSLoss, JointNoTrans
from bcemb.methods.parts import (
    Fitting,
    Fresh,
    FromPrevious,
    Independent,
    Init,
    JointFit,
    PostHocFit,
    ReuseFirst,
)
from bcemb.methods.posthoc import PostHoc, PostLinMLoss, PostLinSLoss
from bcemb.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
# The original code's names are kept as synonyms.
METHODS.register("fix-m0", synonyms=("fix_m0", "fixm0"))(FixM0)
METHODS.register("finetune-m0", synonyms=("finetune_m0", "finetune"))(FinetuneM0)
METHODS.register("non-bc", synonyms=("nobc", "non_bc", "not-bc"))(NonBC)
METHODS.register("post-lin-sloss", synonyms=("posthoc-linear-sloss", "posthoc_linear_sloss"))(PostLinSLoss)
METHODS.register("post-lin-mloss", synonyms=("posthoc-linear-mloss", "posthoc_linear_mloss"))(PostLinMLoss)
METHODS.register("joint-notrans", synonyms=("joint-notrans-sloss", "joint_notrans_sloss"))(JointNoTrans)
METHODS.register("joint-lin-sloss", synonyms=("joint-linear-sloss", "joint_linear_sloss"))(JointLinSLoss)
METHODS.register("bc-aligner", synonyms=("joint-lin-mloss", "joint-linear-mloss", "joint_linear_mloss"))(BCAligner)
# Other transform families (issue 10); not run by the default benchmark.
METHODS.register("bc-aligner-orth", synonyms=("bc-aligner-procrustes",))(BCAlignerOrth)
METHODS.register("bc-aligner-lowrank", synonyms=("bc-aligner-low-rank",))(BCAlignerLowRank)
METHODS.register("bc-aligner-mlp")(BCAlignerMLP)
METHODS.register("post-procrustes", synonyms=("post-orth-sloss",))(PostProcrustes)

#: The reference row of every table: not a method to train, but shown like one.
KEEP_ALL = "keep-all"


@dataclass(frozen=True)
class MethodInfo:
    """How a method (or Keep-All) is labelled, ordered and drawn."""

    name: str
    label: str
    order: int
    style: dict[str, Any] = field(default_factory=dict)


def method_info(name: str) -> MethodInfo:
    """Label, order and plot style of a registered method or of Keep-All."""
    if name == KEEP_ALL:
        return MethodInfo(KEEP_ALL, "Keep-All", 0, {"color": "black", "marker": "s", "linestyle": "-"})
    cls = METHODS.get(name)
    return MethodInfo(cls.name, cls.label, cls.order, dict(cls.style))


def method_order() -> list[str]:
    """Registered method names in table order."""
    return sorted(METHODS.names(), key=lambda n: METHODS.get(n).order)


def paper_methods() -> list[str]:
    """The paper's eight methods in table order (the default benchmark)."""
    return [n for n in method_order() if METHODS.get(n).paper]


def joint_methods() -> tuple[str, ...]:
    """Methods whose ``lam`` matters (the lambda sweep of Figure 5), in table order."""
    return tuple(n for n in method_order() if METHODS.get(n).fitting.uses_lam)


#: Methods whose ``lam`` matters, at import time (extra methods registered later: use
#: :func:`joint_methods`).
JOINT_METHODS = joint_methods()


def build_method(name: str, *, lam: float = 16.0) -> Method:
    """A method instance from its registry name."""
    return METHODS.get(name)(lam=lam)


__all__ = [
    "JOINT_METHODS",
    "KEEP_ALL",
    "METHODS",
    "BCAligner",
    "BCAlignerLowRank",
    "BCAlignerMLP",
    "BCAlignerOrth",
    "FinetuneM0",
    "Fitting",
    "FixM0",
    "Fresh",
    "FromPrevious",
    "Independent",
    "Init",
    "Joint",
    "JointFit",
    "JointLinSLoss",
    "JointNoTrans",
    "Method",
    "MethodContext",
    "MethodInfo",
    "ModelCache",
    "NonBC",
    "PostHoc",
    "PostHocFit",
    "PostLinMLoss",
    "PostLinSLoss",
    "PostProcrustes",
    "ReuseFirst",
    "VersionArtifact",
    "build_method",
    "joint_methods",
    "method_info",
    "method_order",
    "paper_methods",
]
