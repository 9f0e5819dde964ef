"""The eight methods of the paper behind one registry (keys are the paper's labels)."""

from __future__ import annotations

from bcemb.methods.base import Method, MethodContext, ModelCache, VersionArtifact
from bcemb.methods.baselines import FinetuneM0, FixM0, NonBC
from bcemb.methods.joint import BCAligner, Joint, JointLinSLoss, JointNoTrans
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

#: Methods whose ``lam`` matters (the lambda sweep of Figure 5).
JOINT_METHODS = tuple(name for name in METHODS.names() if METHODS.get(name).fitting == "joint")


def build_method(name: str, *, lam: float = 16.0) -> Method:
    """A method instance from its registry name."""
    return METHODS.get(name)(lam=lam)


__all__ = [
    "JOINT_METHODS",
    "METHODS",
    "BCAligner",
    "FinetuneM0",
    "FixM0",
    "Joint",
    "JointLinSLoss",
    "JointNoTrans",
    "Method",
    "MethodContext",
    "ModelCache",
    "NonBC",
    "PostHoc",
    "PostLinMLoss",
    "PostLinSLoss",
    "VersionArtifact",
    "build_method",
]
