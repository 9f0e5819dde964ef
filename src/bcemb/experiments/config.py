"""Experiment configuration: data, model sizes, training and consumer profiles.

Two profiles:

* ``paper`` is PROTOCOL section 5 exactly: the paper's sizes, 500 epochs, batch 2048,
  evaluation every 10 epochs, joint methods selected after epoch 50, 10 consumer seeds.
* ``quick`` keeps every step of the protocol but does less work: an eighth of the width
  (same depth schedule), at most 24 epochs with evaluation every 3, joint warm-up 12,
  early stopping after 3 evaluations without progress, batch 8192 (4x fewer full-graph
  passes per epoch) with learning rate 0.004, and 3 consumer seeds. See ``docs/profiles.md`` for the reasons.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from bcemb.data.splits import DEFAULT_TIMES
from bcemb.evaluation.consumer import ConsumerConfig
from bcemb.training.config import TrainConfig

__all__ = ["SIZE_TABLES", "PROFILES", "ConsumerConfig", "ExperimentConfig", "profile_config", "apply_overrides"]

#: ``(num_layers, dim)`` per version.
SIZE_TABLES: dict[str, tuple[tuple[int, int], ...]] = {
    # Paper, Musical Instruments and Video Games: 2 layers x 256, +64 per version, 3 layers from t_2.
    "amazon": ((2, 256), (2, 320), (3, 384), (3, 448), (3, 512)),
    # Paper, Grocery (smaller for GPU memory).
    "grocery": ((1, 256), (1, 320), (2, 384), (2, 384), (2, 384)),
    # Quick: the same schedule (+1/8 of the first width per version, 3 layers from t_2) at an
    # eighth of the width.
    "quick": ((2, 32), (2, 40), (3, 48), (3, 56), (3, 64)),
}


PROFILES: dict[str, dict[str, Any]] = {
    "paper": {
        "sizes": "amazon",
        "train": TrainConfig(),
        "consumer": ConsumerConfig(),
    },
    "quick": {
        "sizes": "quick",
        "train": TrainConfig(
            epochs=24, batch_size=8192, lr=4e-3, eval_every=3, warmup_epochs=12, patience=3,
            posthoc_steps=2000,
        ),
        "consumer": ConsumerConfig(seeds=3, epochs=100, patience=10),
    },
}


@dataclass
class ExperimentConfig:
    """Everything a run needs; saved resolved next to its results.

    Attributes:
        dataset: Registered dataset name (``ml-100k``, ``amazon``, ``synthetic``).
        dataset_options: Keyword arguments of the dataset source (paths, sizes).
        times: ``t_0 .. t_K`` then the closing time.
        profile: ``quick`` or ``paper``: defaults for sizes, training and consumers.
        sizes: ``(num_layers, dim)`` per version.
        train: Training hyperparameters.
        consumer: Consumer hyperparameters.
        seed: Base seed; every model and consumer seed derives from it.
        device: ``cpu``, ``cuda`` or ``auto``.
        lam: Weight of the alignment loss of the joint methods (16 in the paper).
        model: Registered embedding model (:data:`bcemb.models.MODELS`).
    """

    dataset: str = "ml-100k"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    times: tuple[float, ...] = DEFAULT_TIMES
    profile: str = "quick"
    sizes: tuple[tuple[int, int], ...] = SIZE_TABLES["quick"]
    train: TrainConfig = field(default_factory=TrainConfig)
    consumer: ConsumerConfig = field(default_factory=ConsumerConfig)
    seed: int = 0
    device: str = "cpu"
    lam: float = 16.0
    model: str = "sage"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent setting."""
        self.train.validate()
        if len(self.sizes) < len(self.times) - 1:
            raise ValueError(
                f"{len(self.times) - 1} versions need {len(self.times) - 1} sizes, got {len(self.sizes)}"
            )
        if not self.lam >= 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")
        if any(len(s) != 2 for s in self.sizes) or any(layers < 1 or dim < 1 for layers, dim in self.sizes):
            raise ValueError(f"sizes must be positive, got {self.sizes}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, resolved form."""
        return {
            "dataset": self.dataset,
            "dataset_options": {k: str(v) if not isinstance(v, int | float | bool) else v for k, v in self.dataset_options.items()},
            "times": list(self.times),
            "profile": self.profile,
            "sizes": [list(s) for s in self.sizes],
            "train": self.train.to_dict(),
            "consumer": self.consumer.to_dict(),
            "seed": self.seed,
            "device": self.device,
            "lam": self.lam,
            "model": self.model,
        }

    def model_fingerprint(self) -> dict[str, Any]:
        """What trained models depend on (not the method or lambda: those are in cache keys)."""
        d = self.to_dict()
        return {k: d[k] for k in ("dataset", "dataset_options", "times", "sizes", "train", "seed", "model")}


def profile_config(profile: str, **overrides: Any) -> ExperimentConfig:
    """An :class:`ExperimentConfig` with a profile's defaults and the given overrides."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    p = PROFILES[profile]
    sizes = overrides.get("sizes")
    if sizes is None or isinstance(sizes, str):  # a string is parsed by apply_overrides
        sizes = SIZE_TABLES[p["sizes"]]
    else:
        overrides.pop("sizes")
    cfg = ExperimentConfig(
        profile=profile,
        sizes=tuple(tuple(s) for s in sizes),
        train=dataclasses.replace(p["train"]),
        consumer=dataclasses.replace(p["consumer"]),
    )
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """Set ``field`` or ``train.field`` / ``consumer.field`` values, checking names and types."""
    for key, value in overrides.items():
        if value is None:
            continue
        target: Any = cfg
        name = key.replace("-", "_")
        if "." in name:
            head, name = name.split(".", 1)
            if head not in ("train", "consumer"):
                raise ValueError(f"unknown setting {key!r}")
            target = getattr(cfg, head)
        fields = {f.name: f for f in dataclasses.fields(target)}
        if name not in fields:
            raise ValueError(f"unknown setting {key!r}; valid: {', '.join(fields)}")
        current = getattr(target, name)
        if isinstance(value, str) and not isinstance(current, str):
            value = _parse_setting(value, current, type(target), name, key)
        setattr(target, name, value)
    cfg.validate()
    return cfg


def _parse_setting(text: str, current: Any, owner: type, name: str, key: str) -> Any:
    """Read ``text`` as the field's type; ``none`` clears an optional field."""
    hint = typing.get_type_hints(owner)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    if optional and text.strip().lower() in ("none", "null"):
        return None
    if current is None:
        # An optional field that is unset now (train.patience): parse as its declared type.
        if not args:
            return text
        try:
            return args[0](text)
        except ValueError as err:
            raise ValueError(f"setting {key!r}: cannot read {text!r} as {args[0].__name__}") from err
    return _parse_like(text, current, key)


def _parse_like(text: str, current: Any, key: str) -> Any:
    try:
        if key == "sizes":  # "2x64,2x80,3x96": (layers, dim) per version
            return tuple(tuple(int(v) for v in part.lower().split("x")) for part in text.split(","))
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(current, tuple):
            elem = type(current[0]) if current else float
            return tuple(elem(x) for x in text.split(","))
        return type(current)(text)
    except ValueError as err:
        raise ValueError(f"setting {key!r}: cannot read {text!r} as {type(current).__name__}") from err
