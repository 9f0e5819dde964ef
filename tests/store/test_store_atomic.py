"""Publishing is atomic: an interrupted publish changes nothing; readers see old or new, never a mix."""

from __future__ import annotations

import importlib
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from bcemb.store import EmbeddingStore, collect_garbage, publish
from bcemb.store import io as sio
from bcemb.store._testing import write_fake_run
from bcemb.store.io import sha256_file

DIMS = (8, 12, 16)
publish_module = importlib.import_module(
    "bcemb.store.publish"
)  # the package re-exports the function


class Crash(Exception):
    """The injected fault."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same lineage finished up to version 1, and up to version 2."""
    base = tmp_path_factory.mktemp("runs")
    return write_fake_run(base / "v1", dims=DIMS, upto=1, seed=5), write_fake_run(
        base / "v2", dims=DIMS, seed=5
    )


@pytest.fixture(scope="module")
def at_v1(tmp_path_factory: pytest.TempPathFactory, runs: tuple[Path, Path]) -> Path:
    root = tmp_path_factory.mktemp("at_v1") / "store"
    publish(runs[0], root, min_probes=16, rows_per_part=40)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file in the store except the lock."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def state(root: Path) -> tuple[int, np.ndarray]:
    """What a fresh reader sees: the latest version and some vectors in version 1."""
    store = EmbeddingStore(root)
    ids = list(store.ids("user")[:10])
    return store.latest, store.get(ids, version=1)


def count_fsyncs(monkeypatch: pytest.MonkeyPatch, run: Path, root: Path) -> int:
    calls = []
    real = sio.fsync_file
    monkeypatch.setattr(sio, "fsync_file", lambda p: (calls.append(p), real(p))[1])
    publish(run, root, min_probes=16, rows_per_part=40)
    monkeypatch.setattr(sio, "fsync_file", real)
    return len(calls)


@pytest.mark.parametrize("torn", [False, True], ids=["crash", "torn-write"])
def test_interrupted_publish_leaves_previous_version(
    at_v1: Path,
    runs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    torn: bool,
) -> None:
    n_writes = count_fsyncs(monkeypatch, runs[1], shutil.copytree(at_v1, tmp_path / "count"))
    assert n_writes > 10
    before = snapshot(at_v1)
    latest, vectors = state(at_v1)
    real = sio.fsync_file
    for fail_at in range(n_writes):
        root = shutil.copytree(at_v1, tmp_path / f"s{fail_at}")
        calls = 0

        def faulty(path: str | Path, fail_at: int = fail_at) -> None:
            nonlocal calls
            calls += 1
            if calls > fail_at:
                if torn:  # the file was half written when the process died
                    Path(path).write_bytes(
                        Path(path).read_bytes()[: Path(path).stat().st_size // 2]
                    )
                raise Crash(f"fault at write {fail_at}")
            real(path)

        monkeypatch.setattr(sio, "fsync_file", faulty)
        with pytest.raises(Crash):
            publish(runs[1], root, min_probes=16, rows_per_part=40)
        monkeypatch.setattr(sio, "fsync_file", real)
        # the previous version is readable and unchanged, file by file
        now = snapshot(root)
        assert {k: v for k, v in now.items() if k in before} == before, (
            f"fault {fail_at} changed stored files"
        )
        got_latest, got = state(root)
        assert got_latest == latest
        np.testing.assert_array_equal(got, vectors)
        assert EmbeddingStore(root).check().ok
        # and the next publish recovers, cleaning up what the crash left
        publish(runs[1], root, min_probes=16, rows_per_part=40)
        assert EmbeddingStore(root).latest == 2 and EmbeddingStore(root).check().ok
        assert not [p for p in root.iterdir() if p.name.startswith(".staging")]
        shutil.rmtree(root)


def test_crash_after_the_switch_keeps_the_new_version(
    at_v1: Path, runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shutil.copytree(at_v1, tmp_path / "s")

    def crash(*args: object) -> None:
        raise Crash("died before deleting retired files")

    monkeypatch.setattr(publish_module, "_remove_unreferenced", crash)
    with pytest.raises(Crash):
        publish(runs[1], root, min_probes=16, rows_per_part=40)
    assert EmbeddingStore(root).latest == 2
    assert (root / "versions/1/user_emb.npy").exists(), "the retired files are still there"
    removed = collect_garbage(root)
    assert root / "versions/1/user_emb.npy" in removed
    assert EmbeddingStore(root).check().ok


def test_readers_during_a_publish_see_old_or_new(
    at_v1: Path, runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_root = shutil.copytree(at_v1, tmp_path / "old")
    new_root = tmp_path / "new"
    publish(runs[1], new_root, min_probes=16, rows_per_part=40)
    expected = {1: state(old_root), 2: state(new_root)}
    root = shutil.copytree(at_v1, tmp_path / "s")
    seen: list[int] = []
    real_file, real_dir = sio.fsync_file, sio.fsync_dir

    def check_reader() -> None:
        latest, vectors = state(root)  # a reader opening the store between two writes
        np.testing.assert_array_equal(vectors, expected[latest][1])
        seen.append(latest)

    def file_then_read(path: str | Path) -> None:
        real_file(path)
        check_reader()

    def dir_then_read(path: str | Path) -> None:
        real_dir(path)
        check_reader()

    monkeypatch.setattr(sio, "fsync_file", file_then_read)
    monkeypatch.setattr(sio, "fsync_dir", dir_then_read)
    publish(runs[1], root, min_probes=16, rows_per_part=40)
    assert seen == sorted(seen) and seen[0] == 1 and seen[-1] == 2, seen
    assert state(root)[0] == 2


def test_concurrent_readers_never_see_a_mix(
    at_v1: Path, runs: tuple[Path, Path], tmp_path: Path
) -> None:
    new_root = tmp_path / "new"
    publish(runs[1], new_root, min_probes=16, rows_per_part=40)
    expected = {1: state(at_v1)[1], 2: state(new_root)[1]}
    root = shutil.copytree(at_v1, tmp_path / "s")
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        while not done.is_set():
            try:
                store = EmbeddingStore(root)
                ids = list(store.ids("user")[:10])
                vectors = store.get(ids, version=1)
                assert store.dim() == DIMS[store.latest]
                np.testing.assert_array_equal(vectors, expected[store.latest])
                seen.append(store.latest)
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)
                return

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        publish(runs[1], root, min_probes=16, rows_per_part=40)
        while len(seen) < 5 and not errors:  # let the readers see the new state too
            threading.Event().wait(0.01)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert seen and seen[-1] == 2


def test_one_writer_at_a_time(at_v1: Path, runs: tuple[Path, Path], tmp_path: Path) -> None:
    from bcemb.store import StoreError
    from bcemb.store.publish import write_lock

    root = shutil.copytree(at_v1, tmp_path / "s")
    with (
        write_lock(root),
        pytest.raises(StoreError, match="another process is changing the store"),
        write_lock(root, timeout=0.2),
    ):
        pass
