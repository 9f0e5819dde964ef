"""Tests of the synthetic evolving-graph generator."""

from __future__ import annotations

import numpy as np
import pytest

from bcemb.data.datasets import DATASETS, load_dataset
from bcemb.data.datasets.synthetic import make_synthetic
from bcemb.data.graph import EvolvingGraph

SMALL = {"num_users": 300, "num_items": 200, "num_edges": 5000}


@pytest.fixture(scope="module")
def graph() -> EvolvingGraph:
    return make_synthetic(**SMALL, seed=3)


def test_registered() -> None:
    assert DATASETS.get("synthetic") is make_synthetic
    assert load_dataset("synthetic", **SMALL, seed=3).num_edges > 0


def test_deterministic_for_a_seed(graph: EvolvingGraph) -> None:
    again = make_synthetic(**SMALL, seed=3)
    for col in ("user", "item", "rating", "timestamp", "user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(graph, col), getattr(again, col))
    for name, group in graph.item_features.items():
        assert group.vocab == again.item_features[name].vocab
        np.testing.assert_array_equal(group.indices, again.item_features[name].indices)
    other = make_synthetic(**SMALL, seed=4)
    assert not np.array_equal(graph.item[:500], other.item[:500])


def test_sizes(graph: EvolvingGraph) -> None:
    # every user and item appears; repeated pairs make num_edges an upper bound
    assert graph.num_users == SMALL["num_users"]
    assert graph.num_items == SMALL["num_items"]
    assert 0.8 * SMALL["num_edges"] <= graph.num_edges <= SMALL["num_edges"]
    assert graph.name == "synthetic"


def test_no_repeated_pairs(graph: EvolvingGraph) -> None:
    keys = graph.user.astype(np.int64) * graph.num_items + graph.item
    assert np.unique(keys).shape[0] == graph.num_edges


def test_timestamps_strictly_increasing_integers(graph: EvolvingGraph) -> None:
    assert graph.timestamp.dtype == np.int64
    assert (np.diff(graph.timestamp) > 0).all()


def test_ratings(graph: EvolvingGraph) -> None:
    r = graph.rating
    assert set(np.unique(r).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (r >= 4).mean() > 0.6


def test_features(graph: EvolvingGraph) -> None:
    brand, category = graph.item_features["brand"], graph.item_features["category"]
    assert brand.num_items == category.num_items == graph.num_items
    sizes = np.diff(brand.offsets)
    assert (sizes == 1).all()
    cat_sizes = np.diff(category.offsets)
    assert ((cat_sizes >= 2) & (cat_sizes <= 3)).all()
    assert len(brand.vocab) > 1 and len(category.vocab) > 3


def test_features_follow_latent_factors() -> None:
    # Brands mark clusters of item factors and users choose by affinity, so a user's edges
    # share a brand more often than under a random relabelling of the items' brands.
    g = make_synthetic(num_users=400, num_items=300, num_edges=8000, num_brands=8, seed=0)
    brand = g.item_features["brand"].indices  # one brand per item, in item order
    shuffled = np.random.default_rng(0).permutation(brand)

    def same_brand_rate(item_brand: np.ndarray) -> float:
        counts = np.zeros((g.num_users, 8))
        np.add.at(counts, (g.user, item_brand[g.item]), 1)
        n = counts.sum(1)
        typical = (n >= 5) & (n <= 40)  # heavy users must spread over everything
        c, n = counts[typical], n[typical]
        return float(((c * (c - 1)).sum(1) / (n * (n - 1))).mean())

    assert same_brand_rate(brand) > 1.1 * same_brand_rate(shuffled)


def test_population_grows_over_time(graph: EvolvingGraph) -> None:
    # re-indexed by first appearance: users present after e edges = max(user[:e]) + 1
    e = graph.num_edges
    fractions = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    users = [int(graph.user[: int(f * (e - 1)) + 1].max()) + 1 for f in fractions]
    items = [int(graph.item[: int(f * (e - 1)) + 1].max()) + 1 for f in fractions]
    assert all(a < b for a, b in zip(users, users[1:], strict=False))
    assert all(a < b for a, b in zip(items, items[1:], strict=False))
    assert 0.2 * graph.num_users < users[0] < 0.8 * graph.num_users
    assert users[-1] == graph.num_users and items[-1] == graph.num_items


def test_every_id_has_an_edge(graph: EvolvingGraph) -> None:
    assert np.bincount(graph.user, minlength=graph.num_users).min() >= 1
    assert np.bincount(graph.item, minlength=graph.num_items).min() >= 1


def test_edge_cases_small() -> None:
    g = make_synthetic(num_users=1, num_items=1, num_edges=2, num_categories=1, num_brands=1)
    assert (g.num_users, g.num_items, g.num_edges) == (1, 1, 1)
    assert g.item_features["category"].bag(0) == ["cat_0"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_users": 0}, "num_users must be a positive integer"),
        ({"num_items": -3}, "num_items must be a positive integer"),
        ({"num_edges": 10.5}, "num_edges must be a positive integer"),
        ({"num_factors": True}, "num_factors must be a positive integer"),
        ({"num_brands": 0}, "num_brands"),
        ({"num_categories": 0}, "num_categories"),
        ({"num_users": 100, "num_items": 100, "num_edges": 150}, "at least num_users"),
        ({"drift": -0.1}, "drift must be a number in \\[0, 1\\]"),
        ({"drift": 1.5}, "drift"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": "a"}, "seed"),
    ],
)
def test_bad_args(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_synthetic(**kwargs)
