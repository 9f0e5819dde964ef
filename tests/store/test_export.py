"""The export's block pipeline: content, row groups, checksums, direct I/O, umask, faults."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bcemb.store import EmbeddingStore
from bcemb.store import export as ex
from bcemb.store.io import sha256_file, table_vectors


def read_export(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    table = pq.read_table(sorted(path.glob("part-*.parquet")))
    return table.column("kind").to_pylist(), table.column("id").to_pylist(), table_vectors(table)


@pytest.mark.parametrize("version", [0, 2])
def test_blocks_within_a_part_round_trip_get(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    # 32-row parts in blocks of 5 rows: every part has several row groups and a short last one
    monkeypatch.setattr(ex, "_block_rows", lambda dim: 5)
    store = EmbeddingStore(store_dir)
    result = store.export(tmp_path / "out", version=version)
    kinds, ids, vectors = read_export(result.path)
    assert len(ids) == result.rows == store.num_nodes("user") + store.num_nodes("item")
    for kind in ("user", "item"):
        mine = [i for k, i in zip(kinds, ids, strict=True) if k == kind]
        assert mine == [str(i) for i in store.ids(kind)]
        rows = np.array([k == kind for k in kinds])
        np.testing.assert_allclose(  # get may sum in another order (multi-threaded BLAS)
            vectors[rows], store.get(mine, version=version, kind=kind), rtol=1e-5, atol=1e-6
        )
    part = pq.ParquetFile(result.path / "part-00000.parquet")
    assert part.metadata.num_row_groups == 7 and part.metadata.row_group(6).num_rows == 2
    assert part.schema_arrow.metadata[b"bcemb.space"].decode() == store.space(version)
    meta = json.loads((result.path / "_export.json").read_text())
    assert meta["parts"] == {
        p.name: sha256_file(p) for p in sorted(result.path.glob("part-*.parquet"))
    }


def test_direct_io_and_the_page_cache_write_the_same_bytes(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EmbeddingStore(store_dir)
    one = store.export(tmp_path / "one", version=1)
    monkeypatch.setattr(ex, "_set_direct", lambda fd, on: False)  # the page cache only
    again = store.export(tmp_path / "again", version=1)
    assert [sha256_file(p) for p in sorted(one.path.iterdir())] == [
        sha256_file(p) for p in sorted(again.path.iterdir())
    ]


@pytest.mark.parametrize("direct", ["on", "refused at open", "refused on write"])
def test_hashed_file_writes_and_hashes_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: str
) -> None:
    monkeypatch.setattr(ex, "_STAGE_BYTES", 4096)  # many staged blocks and a tail
    if direct == "refused at open":
        monkeypatch.setattr(ex, "_set_direct", lambda fd, on: False)
    elif direct == "refused on write":
        real_set, real_write = ex._set_direct, os.write
        # direct I/O taken as on even where the file system refuses it, to reach the fallback
        monkeypatch.setattr(ex, "_set_direct", lambda fd, on: real_set(fd, on) or on)
        calls = {"n": 0}

        def write(fd: int, data: memoryview) -> int:
            calls["n"] += 1
            if calls["n"] == 2:  # a file system that refuses direct I/O only when writing
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_write(fd, data)

        monkeypatch.setattr(ex.os, "write", write)
    rng = np.random.default_rng(0)
    chunks = [rng.bytes(int(n)) for n in rng.integers(1, 10_000, size=20)]
    path = tmp_path / "f.bin"
    with ex._HashedFile(path) as sink:
        for chunk in chunks:
            assert sink.write(chunk) == len(chunk)
    assert path.read_bytes() == b"".join(chunks)
    assert sink.hexdigest() == sha256_file(path)


def test_export_honours_the_umask(store_dir: Path, tmp_path: Path) -> None:
    store = EmbeddingStore(store_dir)
    old = os.umask(0o027)
    try:
        out = store.export(tmp_path / "out", version=0).path
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o640}


def test_a_failing_block_leaves_nothing(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EmbeddingStore(store_dir)
    store.export(tmp_path / "out", version=0)
    before = {p.name: sha256_file(p) for p in (tmp_path / "out").iterdir()}
    monkeypatch.setattr(ex, "_block_rows", lambda dim: 5)
    real = ex._mapper

    def failing(matrix: object, version: int) -> ex._Mapper:
        f = real(matrix, version)  # type: ignore[arg-type]
        seen = {"n": 0}

        def g(z: np.ndarray, out: np.ndarray) -> np.ndarray:
            seen["n"] += 1
            if seen["n"] == 3:
                raise MemoryError("injected")
            return f(z, out)

        return g

    monkeypatch.setattr(ex, "_mapper", failing)
    with pytest.raises(MemoryError, match="injected"):
        store.export(tmp_path / "out", version=1, overwrite=True)
    assert {p.name: sha256_file(p) for p in (tmp_path / "out").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "store"]


def test_largest_tasks_run_first_and_results_keep_the_task_order() -> None:
    tasks = [
        ex._Task("r", "m", "s", 0, 4, "user", "e", "i", 0, a, b, f"p{n}")
        for n, (a, b) in enumerate([(0, 10), (10, 12), (12, 42), (42, 50)])
    ]
    seen: list[str] = []

    def run(ts: list[ex._Task]) -> list[tuple[int, str]]:
        seen.extend(t.out for t in ts)
        return [(t.stop - t.start, t.out) for t in ts]

    assert ex._largest_first(run, tasks) == [(10, "p0"), (2, "p1"), (30, "p2"), (8, "p3")]
    assert seen == ["p2", "p0", "p3", "p1"]
