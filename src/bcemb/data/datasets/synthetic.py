"""A synthetic evolving user-item graph with drifting tastes and feature-bearing items.

The generator works in a time fraction ``tau`` in ``[0, 1]``:

1. Users and items arrive at sorted times (5 % of each at 0, the rest uniform), so the
   populations grow over the whole range. Each user's first edge is at its arrival time, with
   an item drawn among the items already there; each item's first edge is at its arrival
   time, with a user drawn among the users already there (by activity). Every user and item
   therefore appears, from its arrival on.
2. The remaining edges have uniform random times; each draws a user among the arrived users
   with probability proportional to a log-normal activity weight, then an item among the
   arrived items with probability proportional to
   ``popularity_i * exp(beta * <p_u(tau), q_i>)``, where the user factor drifts linearly,
   ``p_u(tau) = s_u + drift * tau * (e_u - s_u)``.
   The item draw is sampling-importance-resampling: a few uniform candidates among the
   arrived items, then the Gumbel-max trick over their log weights, vectorised in chunks.
3. Repeated user-item pairs are redrawn up to ten times, each time choosing more broadly,
   and any left are dropped (the first edge of a pair is kept, so BPR negatives are true
   non-edges). ``num_edges`` is therefore an upper bound: about 98 % of it is kept at the
   default sizes and all of it at Grocery scale, less in graphs so dense that heavy users run
   out of items.
4. Ratings are affinity plus noise, binned at fixed quantiles so that every value 1..5
   appears, about 65 % are 5 and 83 % at least 4 (roughly the Amazon 5-core shares).
5. Item factors cluster around one centre per brand (brand sizes uneven). An item's brand is
   the argmax of a noisy projection of its factor onto the centres (mostly its cluster's),
   its categories the top 2 or 3 of a noisy projection onto random directions, so features
   carry the latent structure that drives the choices.
"""

from __future__ import annotations

import logging
import numbers

import numpy as np

from bcemb.data.datasets import DATASETS
from bcemb.data.graph import EvolvingGraph

logger = logging.getLogger(__name__)

__all__ = ["make_synthetic"]

_CANDIDATES = 32  # SIR candidates per item draw: enough for a sharp choice, cheap to gather
_BETA = 3.0  # sharpness of exp(affinity) in the item choice
_POP_SIGMA = 0.5  # spread of log item popularity
_CLUSTER = 0.8  # weight of the brand centre in an item factor (the rest is item noise)
_FEATURE_NOISE = 0.3  # Gumbel noise on the feature projections
_TINY = np.finfo(np.float32).tiny
_CHUNK = 1 << 15  # edges per vectorised chunk (~32 MB of gathered factors)
_INITIAL = 0.05  # share of users and items present at tau = 0
_REDRAW_ROUNDS = 10  # redraws of repeated pairs before dropping the rest
# Cumulative shares of ratings 1..4; the rest are 5 (Amazon 5-core files: ~2/3 five stars).
_RATING_CUTS = (0.04, 0.08, 0.17, 0.35)
_RATING_NOISE = 0.5
_T0 = 1_388_534_400  # 2014-01-01 UTC, only to make timestamps look like real ones
_SPAN_S = 4 * 365 * 86_400  # four years


@DATASETS.register("synthetic")
def make_synthetic(
    *,
    num_users: int = 2000,
    num_items: int = 1000,
    num_edges: int = 40000,
    num_factors: int = 8,
    num_brands: int = 20,
    num_categories: int = 30,
    drift: float = 0.3,
    seed: int = 0,
) -> EvolvingGraph:
    """Generate an evolving graph whose users and items keep arriving and whose tastes drift.

    Args:
        num_users: Users; all of them appear. Default 2000.
        num_items: Items; all of them appear. Default 1000.
        num_edges: Edges before dropping repeated user-item pairs, an upper bound (repeats
            are redrawn first, so it is met closely unless the graph is dense); at least
            ``num_users + num_items``.
            Default 40000.
        num_factors: Dimension of the latent user and item factors. Default 8.
        num_brands: Number of brand values (one per item). Default 20.
        num_categories: Number of category values (2 or 3 per item). Default 30.
        drift: How far a user's factor moves from its start to its end vector by
            ``tau = 1``, in ``[0, 1]``. Default 0.3.
        seed: Seed of the ``numpy.random.default_rng`` that draws everything. Default 0.

    Returns:
        The graph, named ``synthetic``, with item feature groups ``brand`` and ``category``;
        original ids are the integers ``0..num_users-1`` and ``0..num_items-1`` in arrival
        order; timestamps are strictly increasing integer seconds.

    Raises:
        ValueError: A size is not a positive integer, ``num_edges < num_users + num_items``,
            or ``drift`` is outside ``[0, 1]``.

    Example:
        >>> g = make_synthetic(num_users=100, num_items=50, num_edges=2000, seed=1)
        >>> g.num_users, g.num_items
        (100, 50)
    """
    _check_args(
        num_users=num_users,
        num_items=num_items,
        num_edges=num_edges,
        num_factors=num_factors,
        num_brands=num_brands,
        num_categories=num_categories,
        drift=drift,
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    d = num_factors
    # Unit-variance affinities: factors with per-coordinate variance 1/sqrt(d).
    scale = d**-0.25
    user_start = rng.standard_normal((num_users, d), dtype=np.float32) * scale
    user_end = rng.standard_normal((num_users, d), dtype=np.float32) * scale
    # Items cluster around one centre per brand, with uneven brand sizes: catalogues are
    # clumpy, and the clusters are what make the features informative about choices.
    centres = rng.standard_normal((num_brands, d), dtype=np.float32)
    topic = rng.choice(num_brands, size=num_items, p=rng.dirichlet(np.ones(num_brands)))
    noise = rng.standard_normal((num_items, d), dtype=np.float32)
    # The weights' squares sum to 1, so coordinates keep variance scale**2.
    item_factor = (_CLUSTER * centres[topic] + np.sqrt(1 - _CLUSTER**2) * noise) * scale
    activity = rng.lognormal(0.0, 1.0, num_users)
    log_pop = rng.normal(0.0, _POP_SIGMA, num_items).astype(np.float32)

    # Arrival times, sorted so that index order is arrival order. A small initial population
    # is there at 0: the first edges need someone to connect, and without it the very first
    # users would collect ~log(num_users) times their share of edges.
    user_arrival = _arrivals(rng, num_users)
    item_arrival = _arrivals(rng, num_items)
    activity_cum = np.cumsum(activity)

    def draw_users(tau: np.ndarray) -> np.ndarray:
        # Inverse-CDF draw restricted to the arrived prefix 0..n(tau)-1.
        n = np.searchsorted(user_arrival, tau, side="right")
        r = rng.random(tau.shape[0]) * activity_cum[n - 1]
        return np.minimum(np.searchsorted(activity_cum, r, side="right"), n - 1)

    def draw_items(user: np.ndarray, tau: np.ndarray, beta: float = _BETA) -> np.ndarray:
        out = np.empty(user.shape[0], dtype=np.int64)
        for lo in range(0, user.shape[0], _CHUNK):
            u, t64 = user[lo : lo + _CHUNK], tau[lo : lo + _CHUNK]
            n = np.searchsorted(item_arrival, t64, side="right")  # float64: exact arrivals
            t = t64.astype(np.float32)
            # Uniform proposal over the arrived items; Gumbel-max over the log weights
            # picks one candidate with probability proportional to its weight.
            cand = (rng.random((u.shape[0], _CANDIDATES), dtype=np.float32) * n[:, None]).astype(
                np.int64
            )
            np.minimum(cand, (n - 1)[:, None], out=cand)  # float rounding can reach n
            p = user_start[u] + (drift * t)[:, None] * (user_end[u] - user_start[u])
            score = beta * np.matmul(item_factor[cand], p[:, :, None])[..., 0] + log_pop[cand]
            # Gumbel noise as -log(Exp(1)): one float32 log instead of rng.gumbel's float64 two;
            # float32 draws can be exactly 0, whose log would make that candidate always win.
            expo = rng.standard_exponential(score.shape, dtype=np.float32)
            score -= np.log(np.maximum(expo, _TINY, out=expo))
            out[lo : lo + _CHUNK] = cand[np.arange(u.shape[0]), score.argmax(axis=1)]
        return out

    # Introduction edges first: each user's and each item's first edge is at its arrival.
    n_regular = num_edges - num_users - num_items
    tau_regular = rng.random(n_regular)
    tau = np.concatenate([user_arrival, item_arrival, tau_regular])
    user = np.concatenate([np.arange(num_users), draw_users(item_arrival), draw_users(tau_regular)])
    item = np.empty(num_edges, dtype=np.int64)
    item[num_users : num_users + num_items] = np.arange(num_items)
    rest = np.r_[0:num_users, num_users + num_items : num_edges]
    item[rest] = draw_items(user[rest], tau[rest])

    order = np.argsort(tau, kind="stable")
    tau, user, item = tau[order], user[order], item[order]

    # Redraw the items of repeated pairs. The first edge of each pair is never touched, so
    # redrawing or dropping repeats keeps every user and item present.
    for round_ in range(_REDRAW_ROUNDS):
        dup = _repeats(user, item, num_items)
        if not dup.any():
            break
        # Each round chooses more broadly: a user whose favourites are taken settles for
        # items liked less, instead of losing the edge.
        item[dup] = draw_items(user[dup], tau[dup], beta=_BETA * 0.7 ** (round_ + 1))
    dup = _repeats(user, item, num_items)
    if dup.any():
        logger.info("dropped %d repeated user-item pairs of %d edges", int(dup.sum()), num_edges)
        keep = ~dup
        tau, user, item = tau[keep], user[keep], item[keep]

    # Ratings: affinity at the time of the edge plus noise, binned at fixed quantiles.
    p = user_start[user] + (drift * tau.astype(np.float32))[:, None] * (
        user_end[user] - user_start[user]
    )
    affinity = np.einsum("ed,ed->e", p, item_factor[item])
    score = affinity + _RATING_NOISE * rng.standard_normal(affinity.shape[0], dtype=np.float32)
    rating = 1 + np.searchsorted(np.quantile(score, _RATING_CUTS), score, side="right")

    # Strictly increasing seconds: cummax of (t - i) + i lifts ties by one second each.
    ts = _T0 + np.floor(tau * _SPAN_S).astype(np.int64)
    steps = np.arange(ts.shape[0], dtype=np.int64)
    ts = np.maximum.accumulate(ts - steps) + steps

    brand, categories = _item_features(rng, item_factor, centres, num_categories)
    graph = EvolvingGraph.from_log(
        user,
        item,
        rating.astype(np.float32),
        ts,
        item_features={"brand": brand, "category": categories},
        min_feature_count=1,
        name="synthetic",
    )
    logger.info("generated %r", graph)
    return graph


def _arrivals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sorted arrival times in ``[0, 1)``; the first ``_INITIAL`` share (at least one) at 0."""
    arrival = np.sort(rng.random(n))
    arrival[: max(1, int(_INITIAL * n))] = 0.0
    return arrival


def _repeats(user: np.ndarray, item: np.ndarray, num_items: int) -> np.ndarray:
    """Mask of edges whose user-item pair occurred earlier in the (time-sorted) arrays."""
    key = user.astype(np.int64) * num_items + item
    _, first = np.unique(key, return_index=True)
    dup = np.ones(key.shape[0], dtype=bool)
    dup[first] = False
    return dup


def _item_features(
    rng: np.random.Generator, item_factor: np.ndarray, centres: np.ndarray, num_categories: int
) -> tuple[dict[object, list[str]], dict[object, list[str]]]:
    """Brand (argmax) and categories (top 2-3) of noisy projections of the item factors.

    The brand projection is onto the unit brand centres, so an item mostly (not always: the
    noise) gets the brand of its cluster; categories project onto random directions.
    """
    num_items, d = item_factor.shape
    num_brands = centres.shape[0]
    unit = centres / np.linalg.norm(centres, axis=1, keepdims=True).clip(min=1e-6)
    brand_score = item_factor @ unit.T + _FEATURE_NOISE * rng.gumbel(size=(num_items, num_brands))
    brand_idx = brand_score.argmax(axis=1)
    cat_dirs = rng.standard_normal((d, num_categories))
    cat_score = item_factor @ cat_dirs + _FEATURE_NOISE * rng.gumbel(
        size=(num_items, num_categories)
    )
    k_max = min(3, num_categories)
    top = np.argsort(-cat_score, axis=1)[:, :k_max]
    n_cats = np.minimum(rng.integers(2, 4, size=num_items), k_max)
    width_b = len(str(num_brands - 1))
    width_c = len(str(num_categories - 1))
    brand: dict[object, list[str]] = {
        i: [f"brand_{b:0{width_b}d}"] for i, b in enumerate(brand_idx.tolist())
    }
    categories: dict[object, list[str]] = {
        i: [f"cat_{c:0{width_c}d}" for c in row[:k]]
        for i, (row, k) in enumerate(zip(top.tolist(), n_cats.tolist(), strict=True))
    }
    return brand, categories


def _check_args(
    *,
    num_users: int,
    num_items: int,
    num_edges: int,
    num_factors: int,
    num_brands: int,
    num_categories: int,
    drift: float,
    seed: int,
) -> None:
    sizes = {
        "num_users": num_users,
        "num_items": num_items,
        "num_edges": num_edges,
        "num_factors": num_factors,
        "num_brands": num_brands,
        "num_categories": num_categories,
    }
    for arg, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    if num_edges < num_users + num_items:
        raise ValueError(
            f"num_edges ({num_edges}) must be at least num_users + num_items "
            f"({num_users + num_items}): every user and item gets a first edge"
        )
    if isinstance(drift, bool) or not isinstance(drift, numbers.Real) or not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be a number in [0, 1], got {drift!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
