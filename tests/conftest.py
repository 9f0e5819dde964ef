"""Shared fixtures: a small evolving graph, a seed, and a fake run published into a store."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import torch

from bcemb.data.datasets.synthetic import make_synthetic
from bcemb.data.graph import EvolvingGraph
from bcemb.store import publish
from bcemb.store._testing import write_fake_run

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


# -- the store and service tests: a fake training run (random weights, no training) --------
DIMS = (8, 12, 16)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished three-version run (dims 8, 12, 16) on a tiny synthetic graph."""
    return write_fake_run(tmp_path_factory.mktemp("run") / "run", dims=DIMS, seed=0)


@pytest.fixture(scope="session")
def _published(tmp_path_factory: pytest.TempPathFactory, run_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("published") / "store"
    publish(run_dir, root, min_probes=32, rows_per_part=32)
    return root


@pytest.fixture()
def store_dir(tmp_path: Path, _published: Path) -> Path:
    """A fresh copy of the run published into a store (small partitions: several parts)."""
    root = tmp_path / "store"
    shutil.copytree(_published, root)
    return root
