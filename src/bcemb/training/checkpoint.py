"""Checkpoints within a version: an interrupted training resumes at its last evaluation.

One safetensors file holds everything (model, transform, Adam state, the best epoch's weights,
the batch generator's state) with the loop's bookkeeping as JSON metadata, written atomically:
a crash leaves the previous checkpoint or the new one, never half of each. Resuming from it
gives bit for bit the run that was not interrupted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from bcemb.utils import atomic_write_bytes

__all__ = ["LoopState", "save_checkpoint", "load_checkpoint"]

_FORMAT = 1


@dataclass
class LoopState:
    """The training loop's state after an evaluation."""

    epoch: int
    curve: list[dict[str, float]] = field(default_factory=list)
    bad_evals: int = 0
    finished: bool = False
    best_score: float | None = None
    best_seen: float | None = None
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_model: dict[str, Tensor] | None = None
    best_transform: dict[str, Tensor] | None = None


def _flat(prefix: str, state: dict[str, Tensor] | None) -> dict[str, Tensor]:
    return {} if state is None else {f"{prefix}.{k}": v.detach().contiguous().cpu() for k, v in state.items()}


def _unflat(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor] | None:
    out = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    return out or None


def save_checkpoint(
    path: Path,
    state: LoopState,
    model: torch.nn.Module,
    transform: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> None:
    """Write the loop's state to ``path`` atomically."""
    opt = optimizer.state_dict()
    tensors = {
        **_flat("model", model.state_dict()),
        **_flat("transform", transform.state_dict() if transform is not None else None),
        **_flat("best_model", state.best_model),
        **_flat("best_transform", state.best_transform),
        "generator": generator.get_state(),
    }
    for i, pstate in opt["state"].items():
        for name, value in pstate.items():
            tensors[f"opt.{i}.{name}"] = torch.as_tensor(value).detach().contiguous().cpu()
    meta = {
        "format": _FORMAT,
        "epoch": state.epoch,
        "curve": state.curve,
        "bad_evals": state.bad_evals,
        "finished": state.finished,
        "best_score": state.best_score,
        "best_seen": state.best_seen,
        "best_epoch": state.best_epoch,
        "best_metrics": state.best_metrics,
        "param_groups": opt["param_groups"],
    }
    atomic_write_bytes(path, st_save(tensors, metadata={"state": json.dumps(meta)}))


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    transform: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> LoopState | None:
    """Restore the loop from ``path`` into the given objects; None when there is none.

    A checkpoint that cannot be read (corrupt, or of other shapes) is ignored with the
    training starting over, never half-applied.
    """
    if not path.is_file():
        return None
    import copy

    saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(transform.state_dict()) if transform else None)
    try:
        raw = path.read_bytes()
        tensors = st_load(raw)
        n = int.from_bytes(raw[:8], "little")
        meta: dict[str, Any] = json.loads(json.loads(raw[8 : 8 + n])["__metadata__"]["state"])
        if meta.get("format") != _FORMAT:
            return None
        model_state = _unflat("model", tensors)
        model.load_state_dict(model_state or {})
        if transform is not None:
            transform.load_state_dict(_unflat("transform", tensors) or {})
        opt_state: dict[int, dict[str, Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, i, name = key.split(".", 2)
                opt_state.setdefault(int(i), {})[name] = value
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        generator.set_state(tensors["generator"])
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError):
        model.load_state_dict(saved[0])  # nothing half-applied: start over from the fresh model
        if transform is not None and saved[1] is not None:
            transform.load_state_dict(saved[1])
        return None
    return LoopState(
        epoch=int(meta["epoch"]),
        curve=list(meta["curve"]),
        bad_evals=int(meta["bad_evals"]),
        finished=bool(meta["finished"]),
        best_score=meta["best_score"],
        best_seen=meta.get("best_seen", meta["best_score"]),
        best_epoch=int(meta["best_epoch"]),
        best_metrics=dict(meta["best_metrics"]),
        best_model=_unflat("best_model", tensors),
        best_transform=_unflat("best_transform", tensors),
    )
