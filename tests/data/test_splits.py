"""Tests of TimeSlices and VersionSplit against slow, obvious recomputations (PROTOCOL 4)."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest

from bcemb.data.graph import DataError, EvolvingGraph
from bcemb.data.splits import DEFAULT_TIMES, TimeSlices


def _random_graph(seed: int, n_edges: int, n_users: int, n_items: int) -> EvolvingGraph:
    rng = np.random.default_rng(seed)
    # Skewed user activity, and users arriving over the whole range with their edges after
    # their arrival, so some new users bring one window edge and others several.
    p = rng.pareto(1.0, n_users) + 0.05
    users = rng.choice(n_users, n_edges, p=p / p.sum())
    horizon = n_edges // 3 + 1
    arrival = rng.integers(0, horizon, n_users)[users]
    times = arrival + np.floor(rng.random(n_edges) * (horizon - arrival)).astype(np.int64)
    return EvolvingGraph.from_log(
        users * 11 + 3,
        rng.integers(0, n_items, n_edges),
        rng.integers(1, 6, n_edges),
        times,  # integers: many ties
    )


def _slow_num_edges(e: int, t: float) -> int:
    """|{i : i / (E - 1) <= t}| in exact arithmetic, t read as the decimal it is written as."""
    t_exact = Fraction(repr(t))
    return sum(1 for i in range(e) if Fraction(i, e - 1) <= t_exact)


def _slow_split(users: list[int], e_k: int, e_k1: int) -> tuple[list[int], list[int], int]:
    """PROTOCOL section 4 rule, edge by edge."""
    present = set(users[:e_k])
    train = list(range(e_k))
    val = []
    new_user_edges: dict[int, list[int]] = defaultdict(list)
    for e in range(e_k, e_k1):
        u = users[e]
        if u in present:
            val.append(e)  # old user's window edge
        else:
            new_user_edges[u].append(e)
    for edges in new_user_edges.values():
        if len(edges) == 1:
            train.append(edges[0])
        else:
            train.extend(edges[:-1])
            val.append(edges[-1])
    return sorted(train), sorted(val), len(new_user_edges)


SIZES = [(60, 15, 10), (400, 80, 30), (1500, 300, 100)]
SEEDS = [0, 1, 2, 3]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"E{s[0]}")
@pytest.mark.parametrize("seed", SEEDS)
def test_splits_match_slow_rule(seed: int, size: tuple[int, int, int]) -> None:
    g = _random_graph(seed, *size)
    s = TimeSlices(g)
    users = g.user.tolist()
    assert s.num_versions == len(DEFAULT_TIMES) - 1 == 5
    for k in range(s.num_versions):
        sp = s.split(k)
        e_k, e_k1 = s.num_edges(k), s.num_edges(k + 1)
        train, val = sp.train_edges.tolist(), sp.val_edges.tolist()
        assert sp.k == k
        # disjoint, and together exactly E_{k+1}
        assert not set(train) & set(val)
        assert len(train) == len(set(train)) and len(val) == len(set(val))
        assert sorted(train + val) == list(range(e_k1))
        assert set(range(e_k)) <= set(train)
        # the new-user rule edge by edge
        exp_train, exp_val, n_new = _slow_split(users, e_k, e_k1)
        assert sorted(train) == exp_train
        assert sorted(val) == exp_val
        assert sp.num_new_users == n_new
        # counts
        assert sp.num_users_at_t == s.num_users(k) and sp.num_items_at_t == s.num_items(k)
        assert sp.num_users == s.num_users(k + 1) and sp.num_items == s.num_items(k + 1)
        np.testing.assert_array_equal(s.window(k), np.arange(e_k, e_k1))


def test_random_logs_exercise_both_new_user_branches() -> None:
    # Guards the test above against logs where no new user has one (or several) window edges.
    singles = multis = 0
    for seed in SEEDS:
        for size in SIZES:
            g = _random_graph(seed, *size)
            s = TimeSlices(g)
            users = g.user.tolist()
            for k in range(s.num_versions):
                present = set(users[: s.num_edges(k)])
                counts: dict[int, int] = defaultdict(int)
                for e in s.window(k).tolist():
                    if users[e] not in present:
                        counts[users[e]] += 1
                singles += sum(c == 1 for c in counts.values())
                multis += sum(c > 1 for c in counts.values())
    assert singles >= 5 and multis >= 5


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"E{s[0]}")
@pytest.mark.parametrize("seed", SEEDS)
def test_users_and_items_present_are_a_prefix(seed: int, size: tuple[int, int, int]) -> None:
    g = _random_graph(seed, *size)
    s = TimeSlices(g)
    for k in range(s.num_versions + 1):  # the closing time too
        n = s.num_edges(k)
        users, items = set(g.user[:n].tolist()), set(g.item[:n].tolist())
        assert s.num_users(k) == len(users)
        assert s.num_items(k) == len(items)
        assert users == set(range(len(users)))
        assert items == set(range(len(items)))


@pytest.mark.parametrize(
    "times",
    [DEFAULT_TIMES, (0.25, 0.5, 0.75, 1.0), (0.1, 0.3, 0.35, 0.9), (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)],
)
@pytest.mark.parametrize("e", [21, 41, 51, 100, 101, 257, 1001, 1500])
def test_ratio_rule_gives_num_edges(e: int, times: tuple[float, ...]) -> None:
    rng = np.random.default_rng(e)
    g = EvolvingGraph.from_log(
        rng.integers(0, 20, e), rng.integers(0, 20, e), np.ones(e), np.arange(e)
    )
    s = TimeSlices(g, times)
    assert s.num_versions == len(times) - 1
    got = [s.num_edges(k) for k in range(len(times))]
    assert got == [_slow_num_edges(e, t) for t in times]
    assert got == sorted(got)
    if times[-1] == 1.0:
        assert got[-1] == e


def test_ratio_rule_boundary_is_inclusive() -> None:
    # E = 11: ratios are 0, 0.1, ..., 1.0, so the edge with ratio exactly t_k belongs to E_k.
    g = EvolvingGraph.from_log(np.arange(11), np.arange(11), np.ones(11), np.arange(11))
    s = TimeSlices(g)
    assert [s.num_edges(k) for k in range(6)] == [6, 7, 8, 9, 10, 11]


def test_single_new_user_trains_and_repeated_new_user_validates_last() -> None:
    # E = 11, t_0 = 0.5: E_0 = edges 0..5 (users a, b); window (0.5, 0.6] = edge 6 only.
    # With times (0.5, 0.9, 1.0): window of version 0 = edges 6..9.
    users = ["a", "b", "a", "b", "a", "b", "c", "d", "a", "d", "e"]
    g = EvolvingGraph.from_log(users, np.arange(11), np.ones(11), np.arange(11))
    s = TimeSlices(g, (0.5, 0.9, 1.0))
    sp = s.split(0)
    # c (new, one edge) -> train; d (new, two edges 7, 9) -> 7 train, 9 val; a (old) -> val
    assert sp.train_edges.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert sp.val_edges.tolist() == [8, 9]
    assert sp.num_new_users == 2
    assert (sp.num_users_at_t, sp.num_users) == (2, 4)
    sp1 = s.split(1)  # window = edge 10 of new user e -> train, nothing validates
    assert sp1.train_edges.tolist() == list(range(11))
    assert sp1.val_edges.tolist() == []


# -- errors ----------------------------------------------------------------------------------


def _line(e: int) -> EvolvingGraph:
    return EvolvingGraph.from_log(np.arange(e), np.arange(e), np.ones(e), np.arange(e))


@pytest.mark.parametrize("e", [1, 2, 3, 5])
def test_log_too_small_for_slices(e: int) -> None:
    with pytest.raises(DataError, match="too small"):
        TimeSlices(_line(e))


def test_smallest_log_that_fits_is_accepted() -> None:
    # 11 edges give one edge per slice with the default times
    s = TimeSlices(_line(11))
    assert [len(s.window(k)) for k in range(5)] == [1, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "times",
    [
        (0.5, 0.5, 1.0),
        (0.6, 0.5, 1.0),
        (0.5, 0.7, 0.6, 1.0),
        (0.5, 1.1),
        (0.5, 0.9, 1.5),
        (0.0, 0.5, 1.0),
        (-0.1, 0.5, 1.0),
        (0.5,),
        (),
        (float("nan"), 1.0),
    ],
)
def test_bad_time_fractions(times: tuple[float, ...]) -> None:
    with pytest.raises(DataError):
        TimeSlices(_line(200), times)


def test_unknown_version() -> None:
    s = TimeSlices(_line(200))
    for bad in (-1, 5, 6):
        with pytest.raises(DataError, match="unknown version"):
            s.split(bad)
        with pytest.raises(DataError, match="unknown version"):
            s.window(bad)
    with pytest.raises(DataError, match="unknown version"):
        s.num_edges(6)
    with pytest.raises(DataError, match="unknown version"):
        s.num_users(-1)
    assert s.num_edges(5) == 200  # the closing time is a valid slice
