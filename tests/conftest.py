"""Shared fixtures: a small evolving graph with planted structure, and a seed."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from bcemb.data.datasets.synthetic import make_synthetic
from bcemb.data.graph import EvolvingGraph

torch.set_num_threads(1)  # tests are small; avoid oversubscribing a 2-core runner


@pytest.fixture(scope="session")
def _toy_graph() -> EvolvingGraph:
    # ~150 users x 120 items so that Recall@50 is not trivial; latent communities drive edges.
    return make_synthetic(num_users=150, num_items=120, num_edges=4000, num_factors=4, seed=7)


@pytest.fixture()
def toy_graph(_toy_graph: EvolvingGraph) -> EvolvingGraph:
    """A deep copy per test, so no test can change another's graph."""
    return copy.deepcopy(_toy_graph)


@pytest.fixture()
def seed() -> int:
    """Sweep with BCEMB_TEST_SEED=<n>."""
    return int(os.environ.get("BCEMB_TEST_SEED", "0"))
