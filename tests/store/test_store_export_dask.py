"""The Dask export equals the single-process export, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from bcemb.store import EmbeddingStore
from bcemb.store.io import sha256_file

pytest.importorskip("dask.distributed")


def digests(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


def test_dask_export_equals_single_process_export(store_dir: Path, tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    store = EmbeddingStore(store_dir)
    single = store.export(tmp_path / "single", version=0)
    assert single.parts >= 4
    # a local cluster of worker processes (the default) ...
    local = store.export(tmp_path / "local", version=0, engine="dask", workers=2)
    assert (local.rows, local.parts, local.engine) == (single.rows, single.parts, "dask")
    assert digests(tmp_path / "local") == digests(tmp_path / "single")
    # ... and a running scheduler given by its address
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        remote = store.export(
            tmp_path / "remote", version=1, engine="dask", scheduler=cluster.scheduler_address
        )
    assert remote.rows == single.rows
    assert digests(tmp_path / "remote") == digests(
        store.export(tmp_path / "single1", version=1).path
    )


def test_scheduler_needs_the_dask_engine(store_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="engine='dask'"):
        EmbeddingStore(store_dir).export(tmp_path / "x", scheduler="tcp://127.0.0.1:1")
