"""Means with Student-t confidence intervals over seeds, and paired differences."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["t_interval", "paired_difference"]


def t_interval(values: Sequence[float] | np.ndarray, *, level: float = 0.95) -> tuple[float, float, int]:
    """``(mean, half_width, n)`` of the two-sided Student-t interval over the finite values.

    With fewer than two finite values the half width is NaN (no spread to estimate).
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = float(x.mean())
    if n < 2:
        return mean, float("nan"), n
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    sem = float(x.std(ddof=1)) / np.sqrt(n)
    return mean, float(stats.t.ppf(0.5 + level / 2, n - 1) * sem), n


def paired_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, level: float = 0.95
) -> tuple[float, float, int]:
    """``t_interval`` of ``a - b`` over pairs (same seed) where both are finite."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} vs {b.shape}")
    return t_interval(a - b, level=level)
