"""Backward transformations and their chains. Independent of the embedding model."""

from __future__ import annotations

from typing import Any

from bcemb.registry import Registry
from bcemb.transforms.base import BackwardTransform
from bcemb.transforms.chain import TransformChain
from bcemb.transforms.linear import LinearTransform
from bcemb.transforms.truncate import TruncateTransform

TRANSFORMS: Registry[type[BackwardTransform]] = Registry("transform")
TRANSFORMS.register("linear")(LinearTransform)
TRANSFORMS.register("truncate", synonyms=("notrans", "identity", "none"))(TruncateTransform)


def build_transform(config: dict[str, Any]) -> BackwardTransform:
    """Rebuild a transform from :meth:`BackwardTransform.to_config` output."""
    try:
        kind, in_dim, out_dim = config["kind"], int(config["in_dim"]), int(config["out_dim"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed transform config {config!r}: {err}") from err
    return TRANSFORMS.get(kind)(in_dim, out_dim)


__all__ = [
    "TRANSFORMS",
    "BackwardTransform",
    "LinearTransform",
    "TransformChain",
    "TruncateTransform",
    "build_transform",
]
