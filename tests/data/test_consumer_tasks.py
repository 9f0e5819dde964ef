"""Tests of the consumer-task labels against slow recomputations (PROTOCOL section 6).

The reference below recomputes every label with Python loops, lists and dicts from the
definitions in ``bcemb.data.consumer_tasks``'s docstring, independently of TimeSlices' own
counts (E_k comes from the ratio rule in exact arithmetic).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest

from bcemb.data.consumer_tasks import TASKS, ConsumerTasks, TaskData
from bcemb.data.graph import DataError, EvolvingGraph
from bcemb.data.splits import DEFAULT_TIMES, TimeSlices

USER_TASKS = ("user_activity", "user_positive_activity")
ITEM_TASKS = ("item_rating_avg", "item_rating_std")


def _random_graph(
    seed: int, n_edges: int = 500, n_users: int = 40, n_items: int = 12
) -> EvolvingGraph:
    rng = np.random.default_rng(seed)
    p = rng.random(n_items) + 0.2  # uneven item popularity
    users = rng.integers(0, n_users, n_edges)
    horizon = n_edges // 4
    times = rng.integers(0, horizon, n_edges)  # ties
    late = users >= 3 * n_users // 4  # a quarter of the users only arrive in the second half
    times[late] = horizon // 2 + times[late] // 2
    items = rng.choice(n_items, n_edges, p=p / p.sum())
    return EvolvingGraph.from_log(users, items, rng.integers(1, 6, n_edges), times)  # 1..5


class SlowTasks:
    """The obvious recomputation of every label."""

    def __init__(
        self, g: EvolvingGraph, times: tuple[float, ...], min_ratings: int, pos: float
    ) -> None:
        self.U = g.user.tolist()
        self.I = g.item.tolist()
        self.R = [int(r) for r in g.rating.tolist()]
        n = len(self.U)
        self.E = [
            sum(1 for i in range(n) if Fraction(i, n - 1) <= Fraction(repr(t))) for t in times
        ]
        self.K = len(times) - 1  # number of versions
        self.min_ratings = min_ratings
        self.pos = pos
        means0 = self.item_means(0, 0)
        self.threshold = statistics.median(means0.values())

    # users ---------------------------------------------------------------------------------
    def users_at(self, k: int) -> list[int]:
        return sorted(set(self.U[: self.E[k]]))

    def user_labels(self, k: int, positive: bool) -> dict[int, int]:
        labels = {u: 0 for u in self.users_at(k)}
        for e in range(self.E[k], self.E[k + 1]):
            u = self.U[e]
            if u in labels and (not positive or self.R[e] >= self.pos):
                labels[u] = 1
        return labels

    # items ---------------------------------------------------------------------------------
    def eligible_items(self, k: int) -> list[int]:
        count: dict[int, int] = defaultdict(int)
        for e in range(self.E[k]):
            count[self.I[e]] += 1
        return sorted(i for i, c in count.items() if c >= self.min_ratings)

    def ratings_until(self, until: int) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for e in range(self.E[until]):
            out[self.I[e]].append(self.R[e])
        return out

    def item_means(self, k: int, until: int) -> dict[int, float]:
        ratings = self.ratings_until(until)
        return {i: sum(ratings[i]) / len(ratings[i]) for i in self.eligible_items(k)}

    def item_variances(self, k: int, until: int) -> dict[int, Fraction]:
        ratings = self.ratings_until(until)
        # exact sample variance (ddof=1); std >= 1 <=> variance >= 1
        return {i: Fraction(statistics.variance(ratings[i])) for i in self.eligible_items(k)}

    # edges ---------------------------------------------------------------------------------
    def edge_set(self, lo: int, hi: int) -> tuple[list[tuple[int, int]], list[int]]:
        pairs = [(self.U[e], self.I[e]) for e in range(lo, hi)]
        return pairs, [int(self.R[e] >= self.pos) for e in range(lo, hi)]


CONFIGS = [(10, 4.0), (5, 3.0)]


def _check_user(d: TaskData, slow: SlowTasks, k: int, positive: bool) -> None:
    expected = slow.user_labels(k, positive)
    assert d.kind == "user" and d.time == k
    assert d.index.tolist() == list(expected)
    assert d.label.tolist() == list(expected.values())


def _check_item(d: TaskData, slow: SlowTasks, k: int, until: int, std: bool) -> None:
    assert d.kind == "item" and d.time == k
    items = slow.eligible_items(k)
    assert d.index.tolist() == items
    if std:
        var = slow.item_variances(k, until)
        got = dict(zip(d.index.tolist(), d.label.tolist(), strict=True))
        for i in items:
            if var[i] == 1:
                continue  # exact-boundary case: see test_item_std_exactly_one_is_positive
            assert got[i] == int(var[i] >= 1), (i, var[i])
    else:
        means = slow.item_means(k, until)
        assert d.label.tolist() == [int(means[i] >= slow.threshold) for i in items]


def _check_edge(d: TaskData, slow: SlowTasks, k: int, lo: int, hi: int) -> None:
    assert d.kind == "edge" and d.time == k
    pairs, labels = slow.edge_set(lo, hi)
    assert d.index.shape == (len(pairs), 2)
    assert [tuple(p) for p in d.index.tolist()] == pairs
    assert d.label.tolist() == labels


@pytest.mark.parametrize("config", CONFIGS, ids=["min10-pos4", "min5-pos3"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_every_label_matches_slow_recomputation(seed: int, config: tuple[int, float]) -> None:
    min_ratings, pos = config
    g = _random_graph(seed)
    s = TimeSlices(g)
    ct = ConsumerTasks(s, min_item_ratings=min_ratings, positive_rating=pos)
    slow = SlowTasks(g, DEFAULT_TIMES, min_ratings, pos)
    assert slow.E == [s.num_edges(k) for k in range(len(DEFAULT_TIMES))]
    assert ct.item_avg_threshold == slow.threshold
    K = s.num_versions
    checked = 0
    for task, split, d in ct.all_sets():
        assert d.task == task
        assert d.label.dtype == np.int64 and set(d.label.tolist()) <= {0, 1}
        assert len(d) == d.label.shape[0] == d.index.shape[0]
        k = {"train": 0, "val": 1 if task in USER_TASKS else 0}.get(split)
        if k is None:
            k = int(split.removeprefix("test@"))
        if task in USER_TASKS:
            _check_user(d, slow, k, positive=task == "user_positive_activity")
        elif task in ITEM_TASKS:
            until = {"train": 0, "val": 1}.get(split, k + 1)
            _check_item(d, slow, k, until, std=task == "item_rating_std")
        else:
            lo, hi = {"train": (0, slow.E[0]), "val": (slow.E[0], slow.E[1])}.get(
                split, (slow.E[k], slow.E[k + 1])
            )
            _check_edge(d, slow, k, lo, hi)
        checked += 1
    # train + val + tests: users 2 + (K - 2), items and edges 2 + (K - 1), less the sets that
    # have one class only (skipped, issue 12): each of those really has one class.
    left_out = 0
    for task in TASKS:
        first = 2 if task in USER_TASKS else 1
        val_time = 1 if task in USER_TASKS else 0
        sets = [ct._data(task, "train", 0), ct._data(task, "val", val_time)]
        tests = {k: ct._data(task, "test", k) for k in range(first, K)}
        one_class = [len(np.unique(d.label)) < 2 for d in sets]
        if task in ct.skipped:
            assert any(one_class) or all(len(np.unique(d.label)) < 2 for d in tests.values())
            left_out += 2 + len(tests)
            continue
        assert not any(one_class)
        for k, d in tests.items():
            if k not in ct.test_times(task):
                assert len(np.unique(d.label)) < 2
                left_out += 1
    assert checked + left_out == 2 * K + 3 * (K + 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_named_accessors_agree_with_all_sets(seed: int) -> None:
    ct = ConsumerTasks(TimeSlices(_random_graph(seed)))
    sets = {(task, split): d for task, split, d in ct.all_sets()}
    assert len(sets) == sum(2 + len(ct.test_times(t)) for t in ct.tasks)
    for task in ct.tasks:
        for split, d in [("train", ct.train(task)), ("val", ct.val(task))] + [
            (f"test@{k}", ct.test(task, k)) for k in ct.test_times(task)
        ]:
            got = sets[(task, split)]
            assert (got.task, got.kind, got.time) == (d.task, d.kind, d.time)
            np.testing.assert_array_equal(got.index, d.index)
            np.testing.assert_array_equal(got.label, d.label)


def test_test_times() -> None:
    ct = ConsumerTasks(TimeSlices(_random_graph(0)))
    for task in USER_TASKS:
        assert ct.test_times(task) == [2, 3, 4]
    for task in (*ITEM_TASKS, "edge_rating"):
        # a task whose labels have one class at some time is not tested then (issue 12)
        full = [k for k in (1, 2, 3, 4) if len(np.unique(ct._data(task, "test", k).label)) == 2]
        assert ct.test_times(task) == full
        assert task in ct.skipped or full == [1, 2, 3, 4]
    for task in TASKS:
        assert ct.train(task).time == 0
        assert ct.val(task).time == (1 if task in USER_TASKS else 0)
        for bad in (0, 5, -1) + ((1,) if task in USER_TASKS else ()):
            with pytest.raises(DataError, match="not tested"):
                ct.test(task, bad)


def test_unknown_task_lists_valid_names() -> None:
    ct = ConsumerTasks(TimeSlices(_random_graph(0)))
    for call in (ct.train, ct.val, ct.test_times, lambda t: ct.test(t, 2)):
        with pytest.raises(DataError) as info:
            call("item_popularity")
        msg = str(info.value)
        assert "item_popularity" in msg
        for name in TASKS:
            assert name in msg


def test_too_few_item_ratings_skips_the_item_tasks(caplog) -> None:
    # issue 12: own data that cannot label a task skips it with a warning instead of failing
    g = _random_graph(0, n_edges=100, n_items=50)
    ct = ConsumerTasks(TimeSlices(g), min_item_ratings=1000)
    assert set(ITEM_TASKS) <= set(ct.skipped) and "ratings by t_0" in ct.skipped["item_rating_avg"]
    assert "user_activity" in ct.tasks and not set(ITEM_TASKS) & set(ct.tasks)
    assert "item_rating_avg skipped" in caplog.text
    assert ct.test_times("item_rating_avg") == [] and len(ct.train("item_rating_avg")) == 0


def test_issue12_constant_ratings_skip_the_rating_tasks(caplog) -> None:
    g = _random_graph(1)
    g.rating[:] = 5.0
    ct = ConsumerTasks(TimeSlices(g))
    assert set(ct.skipped) == {"user_positive_activity", "item_rating_avg", "item_rating_std", "edge_rating"}
    assert ct.tasks == ("user_activity",)
    assert "every rating is 5" in ct.skipped["edge_rating"]
    assert "edge_rating skipped" in caplog.text
    assert all(len(np.unique(d.label)) == 2 for _, _, d in ct.all_sets())


def test_hand_made_labels() -> None:
    # 20 edges, default times: E_0 = edges 0..9 (ratio <= 0.5 means i <= 9.5), window
    # (t_0, t_1] = edges 10..11, (t_1, t_2] = 12..13, ...
    users = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 3, 0, 0, 3, 3, 3, 3, 3, 3]
    items = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]
    rates = [5, 5, 5, 5, 5, 1, 2, 1, 2, 3, 3, 4, 5, 1, 1, 1, 1, 1, 1, 1]
    g = EvolvingGraph.from_log(users, items, rates, np.arange(20))
    s = TimeSlices(g)
    assert [s.num_edges(k) for k in range(3)] == [10, 12, 14]
    ct = ConsumerTasks(s, min_item_ratings=5)
    # user activity at t_0 (users 0..2): window edges 10 (user 1, rating 3) and 11 (user 3,
    # new, rating 4: not an input at t_0)
    assert ct.train("user_activity").label.tolist() == [0, 1, 0]
    assert ct.train("user_positive_activity").label.tolist() == [0, 0, 0]
    # at t_1 (users 0..3): window edges 12 (user 0, rating 5) and 13 (user 0, rating 1)
    assert ct.val("user_activity").label.tolist() == [1, 0, 0, 0]
    assert ct.val("user_positive_activity").label.tolist() == [1, 0, 0, 0]
    # items 0 (ratings 5 x5) and 1 (1, 2, 1, 2, 3) both have 5 ratings by t_0;
    # threshold = median(5.0, 1.8) = 3.4
    assert ct.item_avg_threshold == pytest.approx(3.4)
    assert ct.train("item_rating_avg").label.tolist() == [1, 0]
    # std until t_0: item 0 -> 0, item 1 -> sqrt(0.7) < 1
    assert ct.train("item_rating_std").label.tolist() == [0, 0]
    # validation labels use ratings until t_1 on the t_0 items: item 0 gets a 3
    # (5,5,5,5,5,3: var 2/3 < 1), item 1 gets a 4 (1,2,1,2,3,4: var 41/30 >= 1)
    v = ct.val("item_rating_std")
    assert (v.time, v.index.tolist(), v.label.tolist()) == (0, [0, 1], [0, 1])
    # means until t_1: 28/6 >= 3.4, 13/6 < 3.4 (the threshold stays the t_0 one)
    assert ct.val("item_rating_avg").label.tolist() == [1, 0]
    # user activity tested at t_2 (users 0..3): the window (edges 14, 15) is user 3's
    d = ct.test("user_activity", 2)
    assert (d.index.tolist(), d.label.tolist()) == ([0, 1, 2, 3], [0, 0, 0, 1])
    # edge rating trains on E_0 only (not on the split's new-user edge 11)
    assert ct.train("edge_rating").label.tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert s.split(0).train_edges.tolist() == list(range(10)) + [11]
    assert ct.val("edge_rating").index.tolist() == [[1, 0], [3, 1]]
    assert ct.val("edge_rating").label.tolist() == [0, 1]
    assert ct.test("edge_rating", 1).index.tolist() == [[0, 0], [0, 1]]


def test_item_std_threshold_is_inclusive() -> None:
    # ratings 3 x5, 4, 5 x5: sample variance exactly 10 / 10 = 1 (computed exactly in floats
    # too); ratings 3 x5, 4 x2, 5 x4: variance 8.9 / 10 < 1
    first = [3] * 5 + [4] + [5] * 5
    second = [3] * 5 + [4] * 2 + [5] * 4
    n = len(first)
    g = EvolvingGraph.from_log(
        list(range(4 * n)),
        [0] * n + [1] * n + [2 + i % 3 for i in range(2 * n)],
        first + second + [4] * 2 * n,
        np.arange(4 * n),
    )
    s = TimeSlices(g)
    assert s.num_edges(0) == 2 * n
    d = ConsumerTasks(s).train("item_rating_std")
    assert (d.index.tolist(), d.label.tolist()) == ([0, 1], [1, 0])


def test_item_std_exactly_one_is_positive() -> None:
    ratings = [2] + [3] * 6 + [5] * 18
    assert statistics.stdev(ratings) == 1.0 and float(np.std(ratings, ddof=1)) == 1.0
    n = len(ratings)
    # item 0 gets the 25 ratings first (all in E_0), then 25 edges on other items
    g = EvolvingGraph.from_log(
        list(range(2 * n)),
        [0] * n + [1 + i % 3 for i in range(n)],
        ratings + [4] * n,
        np.arange(2 * n),
    )
    s = TimeSlices(g)
    assert s.num_edges(0) == n
    d = ConsumerTasks(s).train("item_rating_std")
    assert d.index.tolist() == [0]
    assert d.label.tolist() == [1]
