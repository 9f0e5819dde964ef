"""Save and load models and transforms as safetensors (configuration in the file's metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from bcemb.models import sage as _sage  # noqa: F401  (registers GraphSAGE)
from bcemb.models.base import build_model
from bcemb.transforms import BackwardTransform, build_transform
from bcemb.utils import atomic_write_bytes

__all__ = ["save_module", "save_model", "load_model", "load_transform", "read_tensors"]


def save_module(path: str | Path, module: nn.Module, config: dict) -> None:
    """Atomically write ``module``'s state and its JSON ``config`` to a safetensors file."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    atomic_write_bytes(path, st_save(state, metadata={"config": json.dumps(config)}))


def save_model(path: str | Path, model: nn.Module) -> None:
    """Atomically write an embedding model (weights + its ``to_config()``) as safetensors."""
    save_module(path, model, model.to_config())  # type: ignore[operator]


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, naming the file in any error."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"missing file: {path}") from None
    try:
        tensors = st_load(raw)
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8 : 8 + n]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt or truncated safetensors file {path}: {err}") from err
    return tensors, meta


def _config(path: Path, meta: dict[str, str]) -> dict:
    try:
        return json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: no model configuration in the file's metadata") from err


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild an embedding model saved by :func:`save_model` (eval mode).

    The model class comes from the :data:`bcemb.models.MODELS` registry by the name in the
    stored configuration (files without one are GraphSAGE models).
    """
    tensors, meta = read_tensors(path)
    cfg = _config(Path(path), meta)
    try:
        model = build_model(cfg)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the stored configuration: {err}") from err
    return model.to(device).eval()


def load_transform(path: str | Path) -> BackwardTransform:
    """Rebuild a transform saved by :func:`save_module` with its ``to_config()``."""
    tensors, meta = read_tensors(path)
    transform = build_transform(_config(Path(path), meta))
    try:
        transform.load_state_dict(tensors)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the stored transform: {err}") from err
    transform.requires_grad_(False)
    return transform
