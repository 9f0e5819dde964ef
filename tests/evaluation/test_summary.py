import math

import pandas as pd
import pytest

from bcemb.evaluation.summary import KEEP_ALL, per_version_means, table3


def _rows():
    rows = []
    nan = float("nan")
    for method, lam, recall, auc, err in [
        (KEEP_ALL, nan, {0: 0.10, 1: 0.20, 2: 0.25}, {("t1", 1): 0.8, ("t1", 2): 0.6, ("t2", 2): 0.5}, 0.0),
        ("bc-aligner", 16.0, {0: 0.10, 1: 0.18, 2: 0.25}, {("t1", 1): 0.72, ("t1", 2): 0.6, ("t2", 2): 0.45}, 0.5),
    ]:
        for k, r in recall.items():
            rows.append((method, lam, k, "intended", -1, "recall@50", r))
            rows.append((method, lam, k, "embedding", -1, "align_error", err * k))
        for (task, k), a in auc.items():
            rows.append((method, lam, k, task, 0, "auc", a - 0.01))
            rows.append((method, lam, k, task, 1, "auc", a + 0.01))
    return pd.DataFrame(rows, columns=["method", "lam", "version", "task", "seed", "metric", "value"])


def test_table3_hand_computed():
    # Regression (issue 9): the paper averages first (versions 0..K, and per task over its
    # test times with the tasks weighing equally), then takes the relative change.
    t = table3(_rows()).set_index("method")
    ka, bc = t.loc[KEEP_ALL], t.loc["bc-aligner"]
    assert ka["intended"] == 0 and ka["unintended"] == 0 and ka["align_error"] == 0
    # intended: mean recall (0.10, 0.18, 0.25) against (0.10, 0.20, 0.25)
    assert bc["intended"] == pytest.approx(100 * (0.53 / 3 - 0.55 / 3) / (0.55 / 3))
    # unintended: task means t1 (0.72 + 0.6) / 2, t2 0.45 against t1 0.7, t2 0.5
    assert bc["unintended"] == pytest.approx(100 * ((0.66 + 0.45) / 2 - 0.6) / 0.6)
    assert bc["sum"] == pytest.approx(bc["intended"] + bc["unintended"])
    assert bc["align_error"] == pytest.approx((0.0 + 0.5 + 1.0) / 3)  # versions 0..2
    assert math.isnan(ka["lam"]) and bc["lam"] == 16.0


def test_per_version_means_is_the_other_order():
    t = per_version_means(_rows()).set_index("method")
    bc = t.loc["bc-aligner"]
    # per-version changes over versions 1..K: mean(-10 %, 0 %); (task, time) pairs (-10, 0, -10)
    assert bc["intended"] == pytest.approx(-5.0)
    assert bc["unintended"] == pytest.approx(-20.0 / 3)
    assert bc["align_error"] == pytest.approx((0.5 + 1.0) / 2)


def test_over_seeds_and_paired_comparison_hand_computed():
    import numpy as np

    from bcemb.evaluation.summary import over_seeds, paired_comparison

    def t(bc, js):
        return pd.DataFrame({"method": ["bc-aligner", "joint-lin-sloss", KEEP_ALL], "lam": [16.0, 16.0, np.nan],
                             "sum": [bc, js, 0.0], "align_error": [bc / 10, js / 10, 0.0],
                             "intended": [0.0] * 3, "unintended": [0.0] * 3})

    tables = {0: t(-3.0, -5.0), 1: t(-4.0, -5.0), 2: t(-2.0, -6.0)}
    agg = over_seeds(tables, ["method", "lam"], ["sum"]).set_index("method")
    # mean -3, sd 1, t_{0.975, 2} = 4.302653
    assert agg.loc["bc-aligner", "sum"] == pytest.approx(-3.0)
    assert agg.loc["bc-aligner", "sum_ci"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert agg.loc[KEEP_ALL, "seeds"] == 3 and math.isnan(agg.loc[KEEP_ALL, "lam"])
    paired = paired_comparison(tables, "bc-aligner", "joint-lin-sloss", 16.0).set_index("metric")
    # differences 2, 1, 4: mean 7/3, sd sqrt(7/3)
    assert paired.loc["sum", "difference"] == pytest.approx(7 / 3)
    assert paired.loc["sum", "ci"] == pytest.approx(4.302653 * math.sqrt(7 / 3) / math.sqrt(3), rel=1e-5)
    assert paired.loc["sum", "seeds"] == 3
