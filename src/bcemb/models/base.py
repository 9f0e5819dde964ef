"""The embedding-model interface that the methods, the training loop, model I/O and the store
depend on; GraphSAGE is one implementation.

An embedding model is an ``nn.Module`` with an output dimension ``dim`` and a JSON-able
``to_config()`` naming its registry key under ``"model"``, so that it can be saved as
safetensors and rebuilt with :func:`build_model` without pickle. What it consumes and how it
is called is the business of the intended-task objective that trains it
(:mod:`bcemb.training.objectives`).

Example:
    >>> @MODELS.register("my-mlp")
    ... class MyMLP(nn.Module):
    ...     def __init__(self, dim): super().__init__(); self.dim = dim; self.net = nn.Linear(8, dim)
    ...     def forward(self, x): return self.net(x)
    ...     def to_config(self): return {"model": "my-mlp", "dim": self.dim}
    ...     @classmethod
    ...     def from_config(cls, config): return cls(config["dim"])
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import nn

from bcemb.registry import Registry

__all__ = ["EmbeddingModel", "MODELS", "build_model", "model_name"]


@runtime_checkable
class EmbeddingModel(Protocol):
    """What bcemb needs from an embedding model ``M_k`` (besides being an ``nn.Module``).

    Attributes:
        dim: The output dimension ``D_k``.
    """

    dim: int

    def to_config(self) -> dict[str, Any]:
        """JSON-able architecture with the registry key under ``"model"``."""
        ...

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EmbeddingModel:
        """A freshly initialised model of the architecture ``config`` describes."""
        ...


#: Embedding-model classes by name; :func:`build_model` rebuilds saved models through it.
MODELS: Registry[type[nn.Module]] = Registry("model")

#: Files written before models named themselves are GraphSAGE models.
_LEGACY_MODEL = "sage"


def model_name(config: dict[str, Any]) -> str:
    """The registry key a model configuration names."""
    return MODELS.canonical(str(config.get("model", _LEGACY_MODEL)))


def build_model(config: dict[str, Any]) -> nn.Module:
    """A fresh model of the architecture in ``config`` (``to_config()`` output)."""
    try:
        cls = MODELS.get(str(config.get("model", _LEGACY_MODEL)))
    except KeyError as err:
        raise ValueError(f"{err}; register your model class in bcemb.models.MODELS") from None
    try:
        return cls.from_config(config)  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed {model_name(config)} model configuration {config!r}: {err}") from err
