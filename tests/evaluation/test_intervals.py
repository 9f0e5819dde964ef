import math

import numpy as np
import pytest

from bcemb.evaluation.intervals import paired_difference, t_interval


def test_t_interval_hand_computed():
    mean, half, n = t_interval([1.0, 2.0, 3.0])
    # sd 1, sem 1/sqrt(3), t_{0.975, 2} = 4.302653
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)


def test_t_interval_ignores_nan_and_needs_two_values():
    mean, half, n = t_interval([np.nan, 5.0])
    assert (mean, n) == (5.0, 1) and math.isnan(half)
    assert math.isnan(t_interval([])[0])


def test_paired_difference_uses_pairs():
    a, b = np.array([1.0, 2.0, 3.5]), np.array([0.5, 1.5, 3.0])
    mean, half, n = paired_difference(a, b)
    assert mean == pytest.approx(0.5) and half == pytest.approx(0.0, abs=1e-12) and n == 3
    with pytest.raises(ValueError, match="shape"):
        paired_difference(a, b[:2])
