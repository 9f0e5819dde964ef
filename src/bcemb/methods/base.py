"""What every method shares: one ``fit_version`` over three declared choices.

A method differs from another only in (1) how it initialises ``M_k`` (fresh, from
``M_{k-1}``, or reusing ``M_0``), (2) its backward transformation ``B_k`` and (3) its
alignment loss and whether ``B_k`` is trained jointly with ``M_k`` or post hoc.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bcemb.losses import ALIGNMENT_LOSSES
from bcemb.models.io import load_model, load_transform, save_module
from bcemb.models.sage import SageConfig, SageEncoder
from bcemb.seeding import derive_seed
from bcemb.training import Alignment, TrainConfig, VersionData, evaluate_model, fit_posthoc, train_model
from bcemb.transforms import TRANSFORMS, BackwardTransform
from bcemb.utils import read_json, write_json

logger = logging.getLogger(__name__)

__all__ = ["Method", "MethodContext", "VersionArtifact", "ModelCache"]

Init = Literal["fresh", "previous", "reuse-m0"]


@dataclass
class VersionArtifact:
    """Version ``k`` of a method: ``M_k``, ``B_k`` (None at k = 0) and how training went."""

    k: int
    model: SageEncoder
    transform: BackwardTransform | None
    recall: dict[int, float]
    best_epoch: int
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    model_key: str = ""
    reused: bool = False


class ModelCache:
    """Trained models (and jointly trained transforms) shared between methods of one run.

    Version 0 is the same ``M_0`` for every method, and Post-Lin-* reuse Non-BC's models,
    so each model is trained once per run and seed. Entries are folders of safetensors and
    JSON, written atomically: a crash never leaves a half entry that looks finished.
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def _dir(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key.replace("/", "__")

    def get(self, key: str) -> tuple[SageEncoder, dict[str, torch.Tensor] | None, dict] | None:
        """``(model, transform state or None, outcome)`` or None when not cached."""
        if self.root is None or not (self._dir(key) / "outcome.json").is_file():
            return None
        d = self._dir(key)
        outcome = read_json(d / "outcome.json")
        tstate = load_transform(d / "transform.safetensors").state_dict() if outcome.get("transform") else None
        return load_model(d / "model.safetensors"), tstate, outcome

    def put(self, key: str, model: SageEncoder, transform: BackwardTransform | None, outcome: dict) -> None:
        """Store an entry; ``outcome.json`` is written last and marks it complete."""
        if self.root is None:
            return
        d = self._dir(key)
        save_module(d / "model.safetensors", model, model.config.to_dict())
        if transform is not None:
            save_module(d / "transform.safetensors", transform, transform.to_config())
        write_json(d / "outcome.json", {**outcome, "transform": transform is not None})


@dataclass
class MethodContext:
    """What a method needs from the experiment around it.

    Attributes:
        data: Version ``k`` -> its tensors (already on the device).
        sizes: ``(num_layers, dim)`` of each version.
        feature_sizes: Vocabulary size of each item feature group.
        config: Training hyperparameters.
        seed: The run's base seed; model seeds derive from it and the model's cache key.
        cache: Where trained models are shared between methods.
        show_progress: Progress bars (None: follow the log level).
    """

    data: Callable[[int], VersionData]
    sizes: Sequence[tuple[int, int]]
    feature_sizes: dict[str, int]
    config: TrainConfig
    seed: int
    cache: ModelCache = field(default_factory=lambda: ModelCache(None))
    show_progress: bool | None = None

    def sage_config(self, size_index: int) -> SageConfig:
        """The architecture of a version size."""
        layers, dim = self.sizes[size_index]
        return SageConfig(int(layers), int(dim), dict(self.feature_sizes))


class Method:
    """Base of every method; subclasses set the class attributes below.

    Attributes:
        name: Registry key (the paper's label in kebab case).
        init: ``fresh`` (new ``M_k``), ``previous`` (start from ``M_{k-1}``, architecture of
            ``M_0``) or ``reuse-m0`` (``M_k = M_0``).
        transform_kind: ``B_k``: ``truncate`` (first ``D_{k-1}`` coordinates; the identity when
            dimensions match) or ``linear``.
        alignment: ``None``, ``single`` or ``multi``.
        fitting: ``joint`` (``B_k`` and ``M_k`` together with ``L_k + lam * L_align``),
            ``posthoc`` (``B_k`` fitted on frozen embeddings of the independent ``M_k``) or
            ``None`` (no alignment).

    Args:
        lam: Weight of the alignment loss (joint methods; 16 in the paper).
    """

    name: ClassVar[str] = "base"
    init: ClassVar[Init] = "fresh"
    transform_kind: ClassVar[str] = "truncate"
    alignment: ClassVar[str | None] = None
    fitting: ClassVar[Literal["joint", "posthoc"] | None] = None

    def __init__(self, *, lam: float = 16.0) -> None:
        self.lam = lam

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, lam={self.lam:g})"

    def to_config(self) -> dict[str, Any]:
        """JSON-able description."""
        return {
            "method": self.name,
            "lam": self.lam if self.fitting == "joint" else None,
            "init": self.init,
            "transform": self.transform_kind,
            "alignment": self.alignment,
            "fitting": self.fitting,
        }

    # -- what differs between methods ---------------------------------------------------------
    def model_key(self, k: int) -> str:
        """Cache key of ``M_k``: methods that train the same model share the key."""
        if k == 0:
            return "m0"  # every method trains M_0 with L_0 alone
        if self.fitting == "joint":
            return f"{self.name}/lam={self.lam:g}/v{k}"
        return f"independent/v{k}"

    def size_index(self, k: int) -> int:
        """Which row of the size table ``M_k`` uses."""
        return k

    # -- the shared procedure ------------------------------------------------------------------
    def _check(self, k: int, ctx: MethodContext, history: Sequence[VersionArtifact]) -> None:
        if self.fitting == "joint" and not self.lam >= 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")
        if len(history) != k:
            raise ValueError(f"version {k} needs the {k} earlier versions, got {len(history)}")
        if not 0 <= self.size_index(k) < len(ctx.sizes):
            raise ValueError(f"no model size for version {k}; sizes: {list(ctx.sizes)}")

    def _new_transform(self, k: int, ctx: MethodContext) -> BackwardTransform:
        d_k = ctx.sizes[self.size_index(k)][1]
        d_prev = ctx.sizes[self.size_index(k - 1)][1]
        return TRANSFORMS.get(self.transform_kind)(d_k, d_prev)

    def fit_version(
        self, k: int, ctx: MethodContext, history: Sequence[VersionArtifact]
    ) -> VersionArtifact:
        """Produce ``M_k`` and ``B_k`` given versions ``0..k-1`` of the same method."""
        self._check(k, ctx, history)
        data = ctx.data(k)
        device = data.train_user.device
        transform = self._new_transform(k, ctx).to(device) if k > 0 else None
        previous = [a.transform for a in history[1:]]  # B_1 .. B_{k-1}, frozen
        key = self.model_key(k)
        cached = ctx.cache.get(key) if self.init != "reuse-m0" or k == 0 else None
        reused = cached is not None
        if self.init == "reuse-m0" and k > 0:
            model = history[0].model
            recall = evaluate_model(model, data, ctx.config.ks)
            outcome = {"best_epoch": 0, "recall": recall, "curve": [], "seconds": 0.0}
        elif cached is not None:
            model, tstate, outcome = cached
            model = model.to(device)
            outcome["recall"] = {int(kk): v for kk, v in outcome["recall"].items()}
            if transform is not None and tstate is not None:
                transform.load_state_dict(tstate)
        else:
            model, outcome = self._train(k, ctx, data, history, transform, previous, key)
            ctx.cache.put(key, model, transform if self.fitting == "joint" else None, outcome)
        if self.fitting == "posthoc" and transform is not None:
            self._fit_posthoc(model, history[-1].model, data, transform, previous, ctx.config)
        if transform is not None:
            transform.requires_grad_(False)
        model.eval().requires_grad_(False)
        return VersionArtifact(
            k=k,
            model=model,
            transform=transform,
            recall=outcome["recall"],
            best_epoch=int(outcome["best_epoch"]),
            curve=outcome.get("curve", []),
            seconds=float(outcome.get("seconds", 0.0)),
            model_key=key,
            reused=reused,
        )

    def _train(
        self,
        k: int,
        ctx: MethodContext,
        data: VersionData,
        history: Sequence[VersionArtifact],
        transform: BackwardTransform | None,
        previous: Sequence[BackwardTransform | None],
        key: str,
    ) -> tuple[SageEncoder, dict]:
        device = data.train_user.device
        seed = derive_seed(ctx.seed, key)
        torch.manual_seed(seed)  # parameter initialisation
        model = SageEncoder(ctx.sage_config(self.size_index(k))).to(device)
        if self.init == "previous" and k > 0:
            model.load_state_dict(history[-1].model.state_dict())
        generator = torch.Generator().manual_seed(seed)
        alignment = None
        joint = self.fitting == "joint" and k > 0
        if joint:
            assert transform is not None and self.alignment is not None
            with torch.no_grad():
                prev_user, prev_item = history[-1].model.eval()(data.train_graph)
            alignment = Alignment(
                transform=transform,
                loss=ALIGNMENT_LOSSES[self.alignment],
                previous=[t for t in previous if t is not None],
                prev_user=prev_user,
                prev_item=prev_item,
                lam=self.lam,
            )
        result = train_model(
            model,
            data,
            ctx.config,
            generator=generator,
            alignment=alignment,
            warmup_epochs=ctx.config.warmup_epochs if joint else 0,
            show_progress=ctx.show_progress,
            desc=f"{self.name} v{k}",
        )
        logger.info(
            "%s v%d: best epoch %d, Recall@%d %.4f (%.1fs)", self.name, k, result.best_epoch,
            ctx.config.primary_k, result.recall[ctx.config.primary_k], result.seconds,
        )
        return model, {
            "best_epoch": result.best_epoch,
            "recall": result.recall,
            "curve": result.curve,
            "seconds": result.seconds,
            "epochs_run": result.epochs_run,
            "seed": seed,
        }

    def _fit_posthoc(
        self,
        model: SageEncoder,
        prev_model: SageEncoder,
        data: VersionData,
        transform: BackwardTransform,
        previous: Sequence[BackwardTransform | None],
        config: TrainConfig,
    ) -> None:
        assert self.alignment is not None
        with torch.no_grad():
            z_k = torch.cat(model.eval()(data.train_graph))
            z_prev = torch.cat(prev_model.eval()(data.train_graph))
        transform.requires_grad_(True)
        fit_posthoc(
            transform, z_k, z_prev, ALIGNMENT_LOSSES[self.alignment],
            [t for t in previous if t is not None], config,
        )
