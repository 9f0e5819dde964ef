"""Dataset sources, each registered by name in :data:`DATASETS`.

A source is a function returning an :class:`~bcemb.data.graph.EvolvingGraph`; its keyword
arguments are the source's options (file paths, sizes, seed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bcemb.data.graph import EvolvingGraph
from bcemb.registry import Registry

DATASETS: Registry[Callable[..., EvolvingGraph]] = Registry("dataset")


def load_dataset(name: str, **kwargs: Any) -> EvolvingGraph:
    """Load the dataset registered as ``name`` with its options."""
    return DATASETS.get(name)(**kwargs)


# Importing the modules registers them.
from bcemb.data.datasets import amazon, movielens, synthetic, table  # noqa: E402,F401

__all__ = ["DATASETS", "load_dataset"]
