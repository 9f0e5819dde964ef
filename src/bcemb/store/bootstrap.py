"""Paired bootstrap intervals of a consumer's metric drop.

The gate judges a metric measured on one finite probe set, so a drop of a few percent can be
the probe sample's noise as much as a regression. Resampling the probe rows (retrieval: the
queries) with replacement, and applying *the same* resample to the baseline's and the
candidate's per-row scores, gives the sampling distribution of the drop; its 2.5 and 97.5
percentiles are the 95 % interval. Pairing matters: both metrics move together with the
sample, so the interval of their difference is much narrower than either metric's own.

Every statistic is computed for a whole block of resamples at once from integer resample
counts (weights ``[B, N]``): ROC-AUC from the score order and per-tie-block weight sums, so
1,000 resamples of 10,000 rows cost a fraction of a second.

Example:
    >>> rows = RowScores("roc_auc", scores=np.array([0.1, 0.8, 0.4, 0.9]), labels=np.array([0, 1, 0, 1]))
    >>> rows.value()
    1.0
    >>> drop_interval(rows, rows, resamples=200, seed=0).low
    0.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "STATISTICS",
    "DropInterval",
    "RowScores",
    "drop_interval",
    "relative_drop",
    "resample_weights",
]

#: Resamples of the gate's interval (enough for stable 2.5 / 97.5 percentiles).
DEFAULT_RESAMPLES = 1000
#: Coverage of the interval.
DEFAULT_LEVEL = 0.95
# Cells of one block of resample weights: bounds memory (~16 MB of float64) whatever N is.
_BLOCK_CELLS = 2_000_000


@dataclass(frozen=True)
class RowScores:
    """What a metric needs, row by row.

    Attributes:
        metric: The metric's name without ``@K`` (a key of :data:`STATISTICS`).
        scores: Model scores ``[N]`` or ``[N, C]``; retrieval: the metric of each query
            ``[N]`` (NaN where it is undefined, e.g. a query without relevant targets).
        labels: ``[N]`` (None for retrieval).
    """

    metric: str
    scores: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def weighted(self, weights: np.ndarray) -> np.ndarray:
        """The metric under each row of ``weights`` ``[B, N]`` (resample counts): ``[B]``."""
        return STATISTICS[self.metric](self, np.asarray(weights, dtype=np.float64))

    def value(self) -> float:
        """The metric on the probe set itself (every row once)."""
        return float(self.weighted(np.ones((1, len(self))))[0])


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def _roc_auc(rows: RowScores, w: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney statistic: P(score_pos > score_neg) + 0.5 P(tie)."""
    assert rows.labels is not None
    y = np.asarray(rows.labels)
    if np.unique(y).size != 2 or rows.scores.ndim != 1:
        return np.full(len(w), np.nan)
    pos = y == y.max()
    neg_rows = np.flatnonzero(~pos)
    neg_rows = neg_rows[np.argsort(rows.scores[neg_rows], kind="stable")]
    neg_sorted = rows.scores[neg_rows]
    # A positive counts the negatives below it fully and those of equal score by half
    # (scikit-learn's tie rule): the mean of the cumulative negative weight at both ends
    # of its tie range, found once by binary search, whatever the weights.
    lo = np.searchsorted(neg_sorted, rows.scores[pos], side="left")
    hi = np.searchsorted(neg_sorted, rows.scores[pos], side="right")
    cum = np.zeros((len(w), len(neg_rows) + 1))
    np.cumsum(w[:, neg_rows], axis=1, out=cum[:, 1:])
    w_pos = w[:, pos]
    num = (w_pos * (cum[:, lo] + cum[:, hi])).sum(axis=1) / 2
    return _safe_ratio(num, w_pos.sum(axis=1) * cum[:, -1])


def _accuracy(rows: RowScores, w: np.ndarray) -> np.ndarray:
    assert rows.labels is not None
    s = rows.scores
    # The rule of bcemb.store.consumers: one logit per row is positive above 0.
    pred = (s > 0).astype(np.int64) if s.ndim == 1 else s.argmax(axis=1)
    correct = (pred == np.asarray(rows.labels).astype(np.int64)).astype(np.float64)
    return _safe_ratio(w @ correct, w.sum(axis=1))


def _query_mean(rows: RowScores, w: np.ndarray) -> np.ndarray:
    """Mean of the per-query values over the queries where they are defined."""
    defined = np.isfinite(rows.scores)
    return _safe_ratio(w[:, defined] @ rows.scores[defined], w[:, defined].sum(axis=1))


#: ``metric name -> (rows, weights [B, N]) -> [B]``: each metric under resample weights.
STATISTICS: dict[str, Callable[[RowScores, np.ndarray], np.ndarray]] = {
    "roc_auc": _roc_auc,
    "accuracy": _accuracy,
    "recall": _query_mean,
    "overlap": _query_mean,
}


def relative_drop(baseline: np.ndarray | float, candidate: np.ndarray | float) -> np.ndarray:
    """``(baseline - candidate) / |baseline|`` (the absolute drop where the baseline is 0)."""
    b, c = np.asarray(baseline, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    scale = np.where(b != 0, np.abs(b), 1.0)
    return (b - c) / scale


def resample_weights(n: int, resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Blocks of bootstrap resample counts: ``[b, n]`` float arrays, ``resamples`` rows in all.

    Row ``r`` counts how often each of the ``n`` rows is drawn in ``n`` draws with
    replacement (a multinomial), the form every statistic here takes.
    """
    block = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, resamples, block):
        b = min(block, resamples - start)
        draws = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


@dataclass(frozen=True)
class DropInterval:
    """A bootstrap interval of a relative drop.

    Attributes:
        low: Lower end (NaN when there is none).
        high: Upper end.
        method: ``paired`` (baseline and candidate rows resampled together),
            ``candidate-only`` (the candidate resampled against a fixed baseline) or ``none``.
        resamples: Bootstrap resamples.
        level: Coverage (0.95).
    """

    low: float
    high: float
    method: str
    resamples: int
    level: float = DEFAULT_LEVEL


def drop_interval(
    candidate: RowScores,
    baseline: RowScores | float,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | Sequence[int] = 0,
    level: float = DEFAULT_LEVEL,
) -> DropInterval:
    """Percentile bootstrap interval of ``relative_drop(baseline, candidate)``.

    Args:
        candidate: The candidate's per-row scores.
        baseline: The baseline's per-row scores on the same rows (paired interval), or the
            baseline metric as a number (only the candidate is resampled).
        resamples: Bootstrap resamples (0: no interval).
        seed: Seed of the resampling (the same seed gives the same interval).
        level: Coverage.
    """
    paired = isinstance(baseline, RowScores)
    if paired and len(baseline) != len(candidate):  # type: ignore[arg-type]
        raise ValueError(f"paired rows differ in number: {len(baseline)} vs {len(candidate)}")  # type: ignore[arg-type]
    if resamples <= 0 or len(candidate) == 0:
        return DropInterval(float("nan"), float("nan"), "none", 0, level)
    drops = []
    for w in resample_weights(len(candidate), resamples, np.random.default_rng(seed)):
        base = baseline.weighted(w) if paired else float(baseline)  # type: ignore[union-attr,arg-type]
        drops.append(relative_drop(base, candidate.weighted(w)))
    d = np.concatenate(drops)
    d = d[np.isfinite(d)]  # a resample with one class only has no ROC-AUC
    if d.size == 0:
        return DropInterval(float("nan"), float("nan"), "none", resamples, level)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(d, [tail, 100 - tail])
    return DropInterval(float(low), float(high), "paired" if paired else "candidate-only", resamples, level)
