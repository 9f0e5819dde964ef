"""Fixtures of the store tests: a fake training run (random weights, no training) and stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bcemb.store import publish
from bcemb.store._testing import write_fake_run

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
