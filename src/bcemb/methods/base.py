"""What every method shares: one ``fit_version`` over declared parts.

A method differs from another only in (1) how ``M_k`` starts (:class:`~bcemb.methods.parts.Init`),
(2) its backward transformation class, (3) its alignment loss and (4) how ``B_k`` is learned
(:class:`~bcemb.methods.parts.Fitting`: independent, joint or post hoc). It never builds a model
itself: the context supplies fresh models and each version's objective and evaluator, so any
embedding model and intended task can be used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from bcemb.methods.parts import Fitting, Fresh, Independent, Init
from bcemb.models.io import load_model, load_transform, save_model, save_module
from bcemb.seeding import derive_seed
from bcemb.training import Evaluator, Objective, TrainConfig, recall_view, train_model
from bcemb.transforms import BackwardTransform, TruncateTransform
from bcemb.utils import read_json, write_json

logger = logging.getLogger(__name__)

__all__ = ["Method", "MethodContext", "VersionArtifact", "ModelCache", "AlignmentLoss"]

AlignmentLoss = Callable[..., torch.Tensor]
_CHECKPOINT = "checkpoint.safetensors"


@dataclass
class VersionArtifact:
    """Version ``k`` of a method: ``M_k``, ``B_k`` (None at k = 0) and how training went."""

    k: int
    model: nn.Module
    transform: BackwardTransform | None
    metrics: dict[str, float]
    best_epoch: int
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    model_key: str = ""
    reused: bool = False

    @property
    def recall(self) -> dict[int, float]:
        """``{K: Recall@K}`` (the recommender task's view of ``metrics``)."""
        return recall_view(self.metrics)


class ModelCache:
    """Trained models (and jointly trained transforms) shared between methods of one run.

    Version 0 is the same ``M_0`` for every method, and Post-Lin-* reuse Non-BC's models,
    so each model is trained once per run and seed. Entries are folders of safetensors and
    JSON, written atomically: a crash never leaves a half entry that looks finished.

    Args:
        root: The cache folder (None: no caching).
        fingerprint: What the cached models depend on (data, sizes, training, seed). A cache
            made under another fingerprint is refused rather than silently reused.
    """

    def __init__(self, root: str | Path | None, fingerprint: dict[str, Any] | None = None) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is not None and fingerprint is not None:
            self._claim(fingerprint)

    def _claim(self, fingerprint: dict[str, Any]) -> None:
        assert self.root is not None
        path = self.root / "fingerprint.json"
        if path.is_file():
            old = read_json(path)
            if old != fingerprint:
                diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
                raise ValueError(
                    f"model cache {self.root} was made with another configuration (differs in: "
                    f"{', '.join(diff)}); use another --out folder or delete it"
                )
        else:
            write_json(path, fingerprint)

    def _dir(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key.replace("/", "__")

    def get(self, key: str) -> tuple[nn.Module, dict[str, torch.Tensor] | None, dict] | None:
        """``(model, transform state or None, outcome)`` or None when not cached."""
        if self.root is None or not (self._dir(key) / "outcome.json").is_file():
            return None
        d = self._dir(key)
        outcome = read_json(d / "outcome.json")
        tstate = load_transform(d / "transform.safetensors").state_dict() if outcome.get("transform") else None
        return load_model(d / "model.safetensors"), tstate, outcome

    def put(self, key: str, model: nn.Module, transform: BackwardTransform | None, outcome: dict) -> None:
        """Store an entry; ``outcome.json`` is written last and marks it complete."""
        if self.root is None:
            return
        d = self._dir(key)
        save_model(d / "model.safetensors", model)
        if transform is not None:
            save_module(d / "transform.safetensors", transform, transform.to_config())
        write_json(d / "outcome.json", {**outcome, "transform": transform is not None})
        (d / _CHECKPOINT).unlink(missing_ok=True)  # the finished entry supersedes it

    def checkpoint(self, key: str) -> Path | None:
        """Where the training of ``key`` checkpoints within the version (None: no cache)."""
        if self.root is None:
            return None
        self._dir(key).mkdir(parents=True, exist_ok=True)
        return self._dir(key) / _CHECKPOINT


@dataclass
class MethodContext:
    """What a method needs from the experiment around it.

    Attributes:
        task: Version ``k`` -> its ``(objective, evaluator)``.
        new_model: Size index -> a freshly initialised model (on the right device). Called
            inside the version's seeded RNG scope.
        dims: Output dimension ``D`` of each size index.
        config: Training hyperparameters.
        seed: The run's base seed; every random draw of a version derives from it and the
            model's cache key.
        cache: Where trained models are shared between methods.
        show_progress: Progress bars (None: follow the log level).
        device: Where models and transforms live.
    """

    task: Callable[[int], tuple[Objective, Evaluator]]
    new_model: Callable[[int], nn.Module]
    dims: Sequence[int]
    config: TrainConfig
    seed: int
    cache: ModelCache = field(default_factory=lambda: ModelCache(None))
    show_progress: bool | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class Method:
    """Base of every method; subclasses declare the parts below.

    Attributes:
        name: Registry key (the paper's label in kebab case).
        label: The label in tables and figures.
        order: Position in tables and figures.
        style: Matplotlib style of its lines (color, marker, linestyle).
        init: How ``M_k`` starts (fresh, from ``M_{k-1}``, or ``M_0`` reused).
        transform: Class of ``B_k`` (``TruncateTransform``: the first ``D_{k-1}`` coordinates).
        alignment: The alignment loss (None: no alignment).
        fitting: How ``B_k`` is learned: independent, joint or post hoc.
        paper: One of the paper's eight methods (the default benchmark runs these).
        closed_form: Post hoc, use the transform's ``fit_closed_form`` (single-step loss).

    Args:
        lam: Weight of the alignment loss (joint methods; 16 in the paper).
    """

    name: ClassVar[str] = "base"
    label: ClassVar[str] = "Base"
    order: ClassVar[int] = 100
    style: ClassVar[dict[str, Any]] = {}
    init: ClassVar[Init] = Fresh()
    transform: ClassVar[type[BackwardTransform]] = TruncateTransform
    alignment: ClassVar[AlignmentLoss | None] = None
    fitting: ClassVar[Fitting] = Independent()
    paper: ClassVar[bool] = True
    closed_form: ClassVar[bool] = False

    def __init__(self, *, lam: float = 16.0) -> None:
        self.lam = lam

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, lam={self.lam:g})"

    def to_config(self) -> dict[str, Any]:
        """JSON-able description."""
        return {
            "method": self.name,
            "lam": self.lam if self.fitting.uses_lam else None,
            "init": type(self.init).__name__,
            "transform": self.transform.kind,
            "alignment": getattr(self.alignment, "__name__", None),
            "fitting": self.fitting.kind,
        }

    def model_key(self, k: int) -> str:
        """Cache key of ``M_k``: every method trains the same ``M_0`` with ``L_0`` alone."""
        return "m0" if k == 0 else self.fitting.model_key(self, k)

    def size_index(self, k: int) -> int:
        """Which row of the size table ``M_k`` uses."""
        return k

    # -- the shared procedure ------------------------------------------------------------------
    def _check(self, k: int, ctx: MethodContext, history: Sequence[VersionArtifact]) -> None:
        if self.fitting.uses_lam and not self.lam >= 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")
        if len(history) != k:
            raise ValueError(f"version {k} needs the {k} earlier versions, got {len(history)}")
        if not 0 <= self.size_index(k) < len(ctx.dims):
            raise ValueError(f"no model size for version {k}; {len(ctx.dims)} sizes given")

    def fit_version(
        self, k: int, ctx: MethodContext, history: Sequence[VersionArtifact]
    ) -> VersionArtifact:
        """Produce ``M_k`` and ``B_k`` given versions ``0..k-1`` of the same method.

        Every random draw of the version (parameter and transform initialisation, batches)
        comes from generators seeded by the run's seed and the model's key, so a version is
        the same whether trained alone, resumed, or inside a benchmark with other methods.
        """
        self._check(k, ctx, history)
        objective, evaluator = ctx.task(k)
        key = self.model_key(k)
        seed = derive_seed(ctx.seed, key)
        transform = None
        if k > 0:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(seed, "transform"))
                transform = self.transform(ctx.dims[self.size_index(k)], ctx.dims[self.size_index(k - 1)])
            transform = transform.to(ctx.device)
        previous = [a.transform for a in history[1:] if a.transform is not None]  # B_1 .. B_{k-1}
        trains = self.init.trains or k == 0
        cached = ctx.cache.get(key) if trains else None
        if not trains:
            model = self.init.model(k, ctx, history, self.size_index(k))
            outcome: dict[str, Any] = {"best_epoch": 0, "metrics": evaluator(model), "curve": [], "seconds": 0.0}
        elif cached is not None:
            model, tstate, outcome = cached
            model = model.to(ctx.device)
            if transform is not None and tstate is not None:
                transform.load_state_dict(tstate)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # parameter initialisation
                # M_0 starts fresh for every method (it is shared); later versions per init.
                model = self.init.model(k, ctx, history, self.size_index(k)) if k else ctx.new_model(self.size_index(0))
            model, outcome = self._train(k, ctx, objective, evaluator, model, history, transform, previous, seed)
            ctx.cache.put(key, model, transform if self.fitting.uses_lam else None, outcome)
        if k > 0:
            self.fitting.after_training(
                self, model, history[-1].model, objective, transform, previous, ctx.config
            )
            assert transform is not None
            transform.requires_grad_(False)
        model.eval().requires_grad_(False)
        return VersionArtifact(
            k=k,
            model=model,
            transform=transform,
            metrics=_metrics(outcome),
            best_epoch=int(outcome["best_epoch"]),
            curve=outcome.get("curve", []),
            seconds=float(outcome.get("seconds", 0.0)),
            model_key=key,
            reused=cached is not None,
        )

    def _train(
        self,
        k: int,
        ctx: MethodContext,
        objective: Objective,
        evaluator: Evaluator,
        model: nn.Module,
        history: Sequence[VersionArtifact],
        transform: BackwardTransform | None,
        previous: Sequence[BackwardTransform],
        seed: int,
    ) -> tuple[nn.Module, dict]:
        alignment = None
        if k > 0:
            alignment = self.fitting.alignment(self, transform, previous, objective, history[-1].model.eval())
        result = train_model(
            model,
            objective,
            evaluator,
            ctx.config,
            generator=torch.Generator().manual_seed(seed),
            alignment=alignment,
            warmup_epochs=self.fitting.warmup(ctx.config) if alignment is not None else 0,
            show_progress=ctx.show_progress,
            desc=f"{self.name} v{k}",
            checkpoint=ctx.cache.checkpoint(self.model_key(k)),
        )
        logger.info(
            "%s v%d: best epoch %d, %s %.4f (%.1fs)", self.name, k, result.best_epoch,
            evaluator.primary, result.metrics[evaluator.primary], result.seconds,
        )
        return model, {
            "best_epoch": result.best_epoch,
            "metrics": result.metrics,
            "curve": result.curve,
            "seconds": result.seconds,
            "epochs_run": result.epochs_run,
            "seed": seed,
        }


def _metrics(outcome: dict[str, Any]) -> dict[str, float]:
    """Metrics of an outcome; entries written before metrics had names hold ``recall``."""
    if "metrics" in outcome:
        return {str(k): float(v) for k, v in outcome["metrics"].items()}
    return {f"recall@{k}": float(v) for k, v in outcome.get("recall", {}).items()}
