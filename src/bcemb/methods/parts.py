"""The parts a method is composed of: how ``M_k`` starts and how ``B_k`` is learned.

A method (:class:`bcemb.methods.base.Method`) declares an :class:`Init`, a transform class, an
alignment loss and a :class:`Fitting`; these objects hold all the behaviour that differs
between methods, so the shared procedure has no branches on method names or flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bcemb.training import Alignment, Objective, TrainConfig, fit_posthoc
from bcemb.transforms.base import BackwardTransform

if TYPE_CHECKING:
    from bcemb.methods.base import Method, MethodContext, VersionArtifact

__all__ = ["Init", "Fresh", "FromPrevious", "ReuseFirst", "Fitting", "Independent", "JointFit", "PostHocFit"]


class Init:
    """How ``M_k`` (``k >= 1``) starts. ``trains``: whether ``M_k`` is trained at all.

    ``M_0`` is always a fresh model trained with ``L_0`` alone, shared by every method.
    """

    trains: bool = True

    def model(self, k: int, ctx: MethodContext, history: Sequence[VersionArtifact], size_index: int) -> nn.Module:
        """The model to train (or to use as is when ``trains`` is False)."""
        return ctx.new_model(size_index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Fresh(Init):
    """A freshly initialised ``M_k``."""


class FromPrevious(Init):
    """``M_k`` starts from ``M_{k-1}``'s weights (same architecture)."""

    def model(self, k: int, ctx: MethodContext, history: Sequence[VersionArtifact], size_index: int) -> nn.Module:
        model = ctx.new_model(size_index)
        model.load_state_dict(history[-1].model.state_dict())
        return model


class ReuseFirst(Init):
    """``M_k = M_0``: trained once at version 0 and reused as is."""

    trains = False

    def model(self, k: int, ctx: MethodContext, history: Sequence[VersionArtifact], size_index: int) -> nn.Module:
        return history[0].model


class Fitting:
    """How ``B_k`` is learned relative to ``M_k``.

    Attributes:
        uses_lam: Whether the method's ``lam`` matters (the lambda sweep runs it).
        kind: Short name recorded in configurations.
    """

    kind: str = "independent"
    uses_lam: bool = False

    def model_key(self, method: Method, k: int) -> str:
        """Cache key of ``M_k``: methods that train the same model share it."""
        return f"independent/v{k}"

    def alignment(
        self, method: Method, transform: BackwardTransform | None, previous: Sequence[BackwardTransform],
        objective: Objective, prev_model: nn.Module,
    ) -> Alignment | None:
        """The joint alignment term while ``M_k`` trains (None: the task loss alone)."""
        return None

    def warmup(self, config: TrainConfig) -> int:
        """Epochs not eligible as the best epoch."""
        return 0

    def after_training(
        self, method: Method, model: nn.Module, prev_model: nn.Module, objective: Objective,
        transform: BackwardTransform | None, previous: Sequence[BackwardTransform], config: TrainConfig,
    ) -> None:
        """Work after ``M_k`` is trained (post-hoc fitting of ``B_k``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Independent(Fitting):
    """No alignment: ``M_k`` is trained for the intended task alone."""


class JointFit(Fitting):
    """``M_k`` and ``B_k`` together with ``L_k + lam * L_align`` on the batch's rows, against the
    frozen ``M_{k-1}``; epochs within the warm-up are not eligible as the best."""

    kind = "joint"
    uses_lam = True

    def model_key(self, method: Method, k: int) -> str:
        return f"{method.name}/lam={method.lam:g}/v{k}"

    def alignment(
        self, method: Method, transform: BackwardTransform | None, previous: Sequence[BackwardTransform],
        objective: Objective, prev_model: nn.Module,
    ) -> Alignment | None:
        assert transform is not None and method.alignment is not None
        return Alignment(
            transform=transform, loss=method.alignment, previous=list(previous),
            target=objective.embed(prev_model), lam=method.lam,
        )

    def warmup(self, config: TrainConfig) -> int:
        return config.warmup_epochs


class PostHocFit(Fitting):
    """``M_k`` is the independent model; ``B_k`` is then fitted on the frozen embeddings of every
    row against ``M_{k-1}``'s (:func:`bcemb.training.fit_posthoc`, or a transform's closed form)."""

    kind = "posthoc"

    def after_training(
        self, method: Method, model: nn.Module, prev_model: nn.Module, objective: Objective,
        transform: BackwardTransform | None, previous: Sequence[BackwardTransform], config: TrainConfig,
    ) -> None:
        assert transform is not None and method.alignment is not None
        z_k, z_prev = objective.embed(model), objective.embed(prev_model)
        closed_form: Any = getattr(transform, "fit_closed_form", None)
        transform.requires_grad_(True)
        if closed_form is not None and getattr(method, "closed_form", False):
            with torch.no_grad():
                closed_form(z_k, z_prev)
            return
        fit_posthoc(transform, z_k, z_prev, method.alignment, previous, config)
