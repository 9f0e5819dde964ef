"""Bootstrap intervals of a metric drop: the weighted statistics, pairing, seeds, coverage."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bcemb.store.bootstrap import (
    STATISTICS,
    RowScores,
    drop_interval,
    relative_drop,
    resample_weights,
)
from bcemb.store.consumers import METRICS


def _scored(n: int, seed: int, signal: float = 0.8) -> RowScores:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # Rounded scores: many ties, the case a rank-based AUC most easily gets wrong.
    return RowScores("roc_auc", np.round(signal * y + rng.standard_normal(n), 1), y)


def _counts(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).integers(0, n, n)
    return idx, np.bincount(idx, minlength=n)[None].astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_roc_auc_is_scikit_learns_on_the_resample(seed: int) -> None:
    rows = _scored(300, seed)
    assert rows.value() == pytest.approx(roc_auc_score(rows.labels, rows.scores), abs=1e-12)
    idx, w = _counts(300, seed + 10)
    assert rows.weighted(w)[0] == pytest.approx(roc_auc_score(rows.labels[idx], rows.scores[idx]), abs=1e-12)


def test_weighted_accuracy_and_query_mean_are_the_resamples_metrics() -> None:
    rng = np.random.default_rng(3)
    y, s = rng.integers(0, 2, 200), rng.standard_normal(200)
    idx, w = _counts(200, 4)
    acc = RowScores("accuracy", s, y)
    assert acc.weighted(w)[0] == pytest.approx(np.mean((s[idx] > 0) == y[idx]))
    multi = RowScores("accuracy", rng.standard_normal((200, 3)), rng.integers(0, 3, 200))
    assert multi.value() == pytest.approx(np.mean(multi.scores.argmax(1) == multi.labels))
    recall = rng.random(200)
    recall[::7] = np.nan  # queries without relevant targets stay out of the mean
    q = RowScores("recall", recall)
    assert q.weighted(w)[0] == pytest.approx(np.nanmean(recall[idx]))
    assert set(STATISTICS) == set(METRICS)


def test_one_class_and_empty_resamples_have_no_auc() -> None:
    rows = RowScores("roc_auc", np.array([0.1, 0.2, 0.3]), np.array([1, 1, 1]))
    assert np.isnan(rows.value())
    two = RowScores("roc_auc", np.array([0.1, 0.9]), np.array([0, 1]))
    assert np.isnan(two.weighted(np.array([[2.0, 0.0]]))[0])  # only the negative drawn


def test_resample_weights_are_multinomial_counts_in_blocks() -> None:
    blocks = list(resample_weights(50_000, 100, np.random.default_rng(0)))
    assert len(blocks) > 1  # 100 x 50k cells do not fit one block
    w = np.concatenate(blocks)
    assert w.shape == (100, 50_000) and (w.sum(axis=1) == 50_000).all()
    assert w.mean() == pytest.approx(1.0) and w.var() == pytest.approx(1.0, rel=0.02)


def test_identical_candidate_has_a_zero_paired_interval() -> None:
    rows = _scored(400, 5)
    paired = drop_interval(rows, rows, resamples=300, seed=1)
    assert paired.method == "paired" and paired.low == paired.high == 0.0
    alone = drop_interval(rows, rows.value(), resamples=300, seed=1)
    assert alone.method == "candidate-only" and alone.low < 0 < alone.high


def test_interval_is_reproducible_with_a_seed() -> None:
    base = _scored(500, 6)
    cand = RowScores("roc_auc", base.scores + np.random.default_rng(7).normal(0, 0.7, 500), base.labels)
    one = drop_interval(cand, base, resamples=400, seed=11)
    assert one == drop_interval(cand, base, resamples=400, seed=11)
    assert one != drop_interval(cand, base, resamples=400, seed=12)
    assert one.low < float(relative_drop(base.value(), cand.value())) < one.high


def test_pairing_narrows_the_interval_of_correlated_scores() -> None:
    base = _scored(500, 8)
    cand = RowScores("roc_auc", base.scores + np.random.default_rng(9).normal(0, 0.3, 500), base.labels)
    paired = drop_interval(cand, base, resamples=400, seed=0)
    alone = drop_interval(cand, base.value(), resamples=400, seed=0)
    assert paired.high - paired.low < 0.5 * (alone.high - alone.low)


def test_paired_interval_covers_the_population_drop() -> None:
    """On probe sets drawn from a population with a known drop, the 95 % interval covers
    it in most draws (a fixed set of seeds: the test is deterministic)."""
    rng = np.random.default_rng(0)
    n_pop = 200_000
    y = rng.integers(0, 2, n_pop)
    base = y + rng.standard_normal(n_pop)
    cand = base + rng.normal(0, 0.8, n_pop)  # a real, moderate degradation
    truth = float(relative_drop(roc_auc_score(y, base), roc_auc_score(y, cand)))
    covered = 0
    for rep in range(40):
        rows = np.random.default_rng([1, rep]).choice(n_pop, 400, replace=False)
        iv = drop_interval(
            RowScores("roc_auc", cand[rows], y[rows]),
            RowScores("roc_auc", base[rows], y[rows]),
            resamples=300,
            seed=rep,
        )
        covered += iv.low <= truth <= iv.high
    assert truth > 0.03 and covered >= 34  # 95 % nominal; 34 of 40 leaves room for chance


def test_no_resamples_no_interval() -> None:
    rows = _scored(50, 1)
    iv = drop_interval(rows, rows, resamples=0)
    assert iv.method == "none" and np.isnan(iv.low) and np.isnan(iv.high)
    with pytest.raises(ValueError, match="differ in number"):
        drop_interval(rows, _scored(60, 1))
