"""The baselines without a learned transform: Fix-M0, Finetune-M0 and Non-BC."""

from __future__ import annotations

from bcemb.methods.base import Method
from bcemb.methods.parts import FromPrevious, ReuseFirst

__all__ = ["FixM0", "FinetuneM0", "NonBC"]


class FixM0(Method):
    """Fix-M0: train ``M_0`` once and use it at every ``t_k`` on the growing graph.

    Perfectly compatible (``B_k`` is the identity) but never improves on the intended task.
    """

    name = "fix-m0"
    label = "Fix-M0"
    order = 1
    style = {"color": "tab:gray", "marker": "v", "linestyle": "--"}
    init = ReuseFirst()

    def size_index(self, k: int) -> int:
        return 0

    def model_key(self, k: int) -> str:
        return "m0"


class FinetuneM0(Method):
    """Finetune-M0: ``M_k`` starts from ``M_{k-1}`` (``M_0``'s architecture) and trains on ``E_k``."""

    name = "finetune-m0"
    label = "Finetune-M0"
    order = 2
    style = {"color": "tab:brown", "marker": "^", "linestyle": "--"}
    init = FromPrevious()

    def size_index(self, k: int) -> int:
        return 0

    def model_key(self, k: int) -> str:
        return "m0" if k == 0 else f"finetune/v{k}"


class NonBC(Method):
    """Non-BC: ``M_k`` trained independently; consumers get its first ``D_0`` coordinates."""

    name = "non-bc"
    label = "Non-BC"
    order = 3
    style = {"color": "tab:red", "marker": "x", "linestyle": ":"}
