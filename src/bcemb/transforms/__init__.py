"""Backward transformations and their chains. Independent of the embedding model."""

from __future__ import annotations

from typing import Any

from bcemb.registry import Registry
from bcemb.transforms.base import BackwardTransform
from bcemb.transforms.chain import TransformChain
from bcemb.transforms.linear import LinearTransform
from bcemb.transforms.low_rank import LowRankTransform
from bcemb.transforms.mlp import ResidualMLPTransform
from bcemb.transforms.orthogonal import OrthogonalTransform
from bcemb.transforms.truncate import TruncateTransform

TRANSFORMS: Registry[type[BackwardTransform]] = Registry("transform")
TRANSFORMS.register("linear")(LinearTransform)
TRANSFORMS.register("truncate", synonyms=("notrans", "identity", "none"))(TruncateTransform)
TRANSFORMS.register("orthogonal", synonyms=("procrustes", "orth"))(OrthogonalTransform)
TRANSFORMS.register("low-rank", synonyms=("lowrank",))(LowRankTransform)
TRANSFORMS.register("mlp", synonyms=("residual-mlp",))(ResidualMLPTransform)


def build_transform(config: dict[str, Any]) -> BackwardTransform:
    """Rebuild a transform from :meth:`BackwardTransform.to_config` output.

    Keys other than ``kind``, ``in_dim`` and ``out_dim`` are the family's hyperparameters.
    """
    try:
        kind, in_dim, out_dim = config["kind"], int(config["in_dim"]), int(config["out_dim"])
        extra = {k: v for k, v in config.items() if k not in ("kind", "in_dim", "out_dim")}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"malformed transform config {config!r}: {err}") from err
    cls = TRANSFORMS.get(kind)
    try:
        return cls(in_dim, out_dim, **extra)
    except TypeError as err:
        raise ValueError(f"malformed transform config {config!r}: {err}") from err


__all__ = [
    "TRANSFORMS",
    "BackwardTransform",
    "LinearTransform",
    "LowRankTransform",
    "OrthogonalTransform",
    "ResidualMLPTransform",
    "TransformChain",
    "TruncateTransform",
    "build_transform",
]
