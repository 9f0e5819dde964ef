"""Seeds: the only place that touches global random number generators."""

from __future__ import annotations

import hashlib
import logging
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["seed_everything", "resolve_seed", "derive_seed"]


def resolve_seed(seed: int | None) -> int:
    """Return ``seed``, or draw one (and log it at WARNING so it can be reused)."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
        logger.warning("no seed given; drew seed %d", seed)
    return int(seed)


def derive_seed(seed: int, *parts: object) -> int:
    """A stable child seed for a sub-task (a version, a consumer, ...)."""
    text = "/".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
