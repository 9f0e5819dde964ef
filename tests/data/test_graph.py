"""Tests of EvolvingGraph.from_log and FeatureGroup (PROTOCOL section 4)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from bcemb.data.graph import DataError, EvolvingGraph, FeatureGroup


def _random_log(seed: int, n: int, *, string_ids: bool) -> dict[str, np.ndarray]:
    """A log with many timestamp ties, ids that are not 0..n-1 and not in time order."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, max(2, n // 4), n) * 7 + 1000  # sparse, large ids
    items = rng.integers(0, max(2, n // 6), n) * 3 + 5
    if string_ids:
        users = np.array([f"u{u}" for u in users])
        items = np.array([f"i{i}" for i in items])
    return {
        "user": users,
        "item": items,
        "rating": rng.integers(1, 6, n).astype(np.float64),
        "timestamp": rng.integers(0, max(2, n // 5), n),  # ~5 edges per timestamp: ties
    }


def _slow_first_appearance(values: list) -> tuple[list, list[int]]:
    ids: list = []
    index: dict = {}
    out: list[int] = []
    for v in values:
        if v not in index:
            index[v] = len(ids)
            ids.append(v)
        out.append(index[v])
    return ids, out


SEEDS = [0, 1, 2, 3, 4]


@pytest.mark.parametrize("string_ids", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_sorted_by_time_ties_keep_input_order(seed: int, string_ids: bool) -> None:
    log = _random_log(seed, 300, string_ids=string_ids)
    g = EvolvingGraph.from_log(**log)
    # Python's sort is stable: the obvious reference for "by time, ties in input order".
    perm = sorted(range(300), key=lambda i: log["timestamp"][i])
    np.testing.assert_array_equal(g.timestamp, log["timestamp"][perm])
    assert (np.diff(g.timestamp) >= 0).all()
    np.testing.assert_array_equal(g.user_ids[g.user], log["user"][perm])
    np.testing.assert_array_equal(g.item_ids[g.item], log["item"][perm])
    np.testing.assert_array_equal(g.rating, log["rating"][perm])
    assert g.num_edges == 300


def test_all_ties_keep_input_order_exactly() -> None:
    users = [5, 3, 9, 3, 1, 5]
    items = [10, 11, 12, 13, 14, 15]
    g = EvolvingGraph.from_log(users, items, [1, 2, 3, 4, 5, 1], [7] * 6)
    np.testing.assert_array_equal(g.item_ids[g.item], items)
    np.testing.assert_array_equal(g.user_ids[g.user], users)
    np.testing.assert_array_equal(g.rating, [1, 2, 3, 4, 5, 1])


def test_reversed_times_reverse_the_log() -> None:
    g = EvolvingGraph.from_log(
        ["a", "b", "c", "a"], ["x", "y", "x", "z"], [1, 2, 3, 4], [40, 30, 20, 10]
    )
    np.testing.assert_array_equal(g.timestamp, [10, 20, 30, 40])
    assert g.user_ids.tolist() == ["a", "c", "b"]
    assert g.user.tolist() == [0, 1, 2, 0]
    assert g.item_ids.tolist() == ["z", "x", "y"]
    assert g.item.tolist() == [0, 1, 2, 1]
    np.testing.assert_array_equal(g.rating, [4, 3, 2, 1])


@pytest.mark.parametrize("string_ids", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_reindexed_by_first_appearance(seed: int, string_ids: bool) -> None:
    log = _random_log(seed, 400, string_ids=string_ids)
    g = EvolvingGraph.from_log(**log)
    perm = sorted(range(400), key=lambda i: log["timestamp"][i])
    for col, ids, idx, count in (
        ("user", g.user_ids, g.user, g.num_users),
        ("item", g.item_ids, g.item, g.num_items),
    ):
        exp_ids, exp_idx = _slow_first_appearance([log[col][i] for i in perm])
        assert idx.tolist() == exp_idx
        assert ids.tolist() == [v.item() if isinstance(v, np.generic) else v for v in exp_ids]
        assert count == len(exp_ids) == len(set(log[col].tolist()))
        # map back to the original ids
        assert [ids[j] for j in idx] == [log[col][i] for i in perm]
        # present at any prefix: exactly 0..n-1
        for cut in (1, 57, 200, 400):
            assert set(idx[:cut].tolist()) == set(range(int(idx[:cut].max()) + 1))


def test_integer_and_float_timestamps() -> None:
    g = EvolvingGraph.from_log([1, 2], [1, 2], [3, 4], np.array([5, 4], dtype=np.int32))
    assert g.timestamp.dtype == np.int64
    gf = EvolvingGraph.from_log([1, 2], [1, 2], [3, 4], [2.5, 1.5])
    np.testing.assert_array_equal(gf.timestamp, [1.5, 2.5])
    assert gf.timestamp.dtype.kind == "f"


# -- features --------------------------------------------------------------------------------


def test_features_min_count_duplicates_and_missing_items() -> None:
    users = ["u1", "u2", "u3", "u4", "u5"]
    items = ["A", "B", "C", "D", "E"]
    feats = {
        "genre": {
            "A": ["x", "x", "x", "y"],  # x three times on one item: counts once
            "B": ["y", "w"],
            "C": ["z", "z"],  # z on one item only, even though listed twice
            "D": ["y"],
            # E missing from the group: empty bag
        },
        "brand": {"A": ["acme"], "B": ["acme"], "C": ["solo"]},
    }
    g = EvolvingGraph.from_log(
        users, items, [5] * 5, [0, 1, 2, 3, 4], item_features=feats, min_feature_count=2
    )
    genre, brand = g.item_features["genre"], g.item_features["brand"]
    assert genre.vocab == ("y",)  # y on A, B, D; x, z and w on one item each
    assert brand.vocab == ("acme",)
    pos = {v: i for i, v in enumerate(g.item_ids.tolist())}
    assert genre.bag(pos["A"]) == ["y"]
    assert genre.bag(pos["B"]) == ["y"]
    assert genre.bag(pos["C"]) == []
    assert genre.bag(pos["E"]) == []
    assert brand.bag(pos["C"]) == []
    assert brand.bag(pos["D"]) == [] and brand.bag(pos["E"]) == []
    assert genre.num_items == brand.num_items == g.num_items == 5

    g1 = EvolvingGraph.from_log(users, items, [5] * 5, [0, 1, 2, 3, 4], item_features=feats)
    genre1 = g1.item_features["genre"]
    assert genre1.vocab == ("w", "x", "y", "z")
    pos1 = {v: i for i, v in enumerate(g1.item_ids.tolist())}
    assert genre1.bag(pos1["A"]) == ["x", "y"]  # duplicates appear once in the bag
    assert genre1.bag(pos1["C"]) == ["z"]
    assert genre1.bag(pos1["E"]) == []


def test_duplicates_counted_once_toward_min_count() -> None:
    # "x" is listed 5 times but on a single item: below min_count=2, so dropped.
    fg = FeatureGroup.from_lists([["x"] * 5, ["q"], ["q", "q"]], min_count=2)
    assert fg.vocab == ("q",)
    assert fg.bag(0) == [] and fg.bag(1) == ["q"] and fg.bag(2) == ["q"]
    assert fg.offsets.tolist() == [0, 0, 1, 2]


@pytest.mark.parametrize("min_count", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_features_match_slow_count(seed: int, min_count: int) -> None:
    rng = np.random.default_rng(seed)
    n_items = 40
    items = [f"it{i}" for i in range(n_items)]
    values = [f"f{j}" for j in range(15)]
    mapping: dict[object, list[str]] = {}
    for it in items:
        if rng.random() < 0.2:
            continue  # missing from the group
        mapping[it] = [values[j] for j in rng.integers(0, 15, rng.integers(0, 6))]
    order = rng.permutation(n_items)
    g = EvolvingGraph.from_log(
        [f"u{i % 7}" for i in range(n_items)],
        [items[i] for i in order],
        np.ones(n_items),
        np.arange(n_items),
        item_features={"g": mapping},
        min_feature_count=min_count,
    )
    fg = g.item_features["g"]
    counts: Counter[str] = Counter()
    for it in items:
        for v in set(mapping.get(it, [])):
            counts[v] += 1
    kept = {v for v, c in counts.items() if c >= min_count}
    assert set(fg.vocab) == kept
    assert list(fg.vocab) == sorted(fg.vocab)
    assert fg.num_items == g.num_items == n_items
    for j, it in enumerate(g.item_ids.tolist()):
        assert sorted(fg.bag(j)) == sorted(set(mapping.get(it, [])) & kept)
        assert len(fg.bag(j)) == len(set(fg.bag(j)))
    assert fg.offsets[0] == 0 and fg.offsets[-1] == fg.indices.shape[0]
    assert (np.diff(fg.offsets) >= 0).all()


def test_features_keyed_by_original_integer_ids() -> None:
    g = EvolvingGraph.from_log(
        [1, 1, 2], [30, 10, 20], [5, 4, 3], [0, 1, 2], item_features={"c": {10: ["a"], 30: ["b"]}}
    )
    c = g.item_features["c"]
    assert [c.bag(j) for j in range(3)] == [["b"], ["a"], []]  # items 30, 10, 20


# -- errors ----------------------------------------------------------------------------------


def test_empty_log_raises() -> None:
    with pytest.raises(DataError, match="empty"):
        EvolvingGraph.from_log([], [], [], [])


@pytest.mark.parametrize("short", ["user", "item", "rating", "timestamp"])
def test_length_mismatch_raises(short: str) -> None:
    cols = {"user": [1, 2, 3], "item": [1, 2, 3], "rating": [1, 2, 3], "timestamp": [1, 2, 3]}
    cols[short] = cols[short][:2]
    with pytest.raises(DataError, match="length"):
        EvolvingGraph.from_log(**cols)


def test_nan_rating_raises() -> None:
    with pytest.raises(DataError, match="NaN"):
        EvolvingGraph.from_log([1, 2], [1, 2], [4.0, float("nan")], [1, 2])


def test_nan_timestamp_raises() -> None:
    with pytest.raises(DataError, match="NaN"):
        EvolvingGraph.from_log([1, 2], [1, 2], [4.0, 5.0], [1.0, float("nan")])


@pytest.mark.parametrize(
    "timestamps",
    [["2020-01-01", "2020-01-02"], np.array([1, 2], dtype=object), ["1", "2"]],
    ids=["dates", "object", "digit-strings"],
)
def test_non_numeric_timestamps_raise(timestamps: object) -> None:
    with pytest.raises(DataError, match="numeric"):
        EvolvingGraph.from_log([1, 2], [1, 2], [4.0, 5.0], timestamps)


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)
