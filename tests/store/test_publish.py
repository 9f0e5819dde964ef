"""Publish and gc: files honour the umask; what a kill after the commit left is cleaned."""

from __future__ import annotations

import importlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bcemb.store import EmbeddingStore, PublishError, collect_garbage, publish
from bcemb.store._testing import write_fake_run
from bcemb.store.store import check_store

publish_module = importlib.import_module("bcemb.store.publish")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("runs")
    return write_fake_run(base / "v1", upto=1, seed=7), write_fake_run(base / "v2", seed=7)


@pytest.fixture()
def umask() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in root.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


@pytest.mark.usefixtures("umask")
def test_every_store_file_honours_the_umask(runs: tuple[Path, Path], tmp_path: Path) -> None:
    root = tmp_path / "store"
    publish(runs[0], root, min_probes=8, check_model=False)
    publish(runs[1], root, min_probes=8, check_model=False)
    found = modes(root)
    assert "CURRENT" in found and "manifests/000001.json" in found
    # 0o666 & ~0o027; mkstemp alone would give CURRENT and the manifests 0o600
    assert set(found.values()) == {0o640}, {k: oct(v) for k, v in found.items() if v != 0o640}
    dirs = {stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_dir()}
    assert dirs == {0o750}


def test_umask_022_gives_0644(runs: tuple[Path, Path], tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        root = tmp_path / "store"
        publish(runs[0], root, min_probes=8, check_model=False)
    finally:
        os.umask(old)
    assert set(modes(root).values()) == {0o644}


def test_kill_just_after_the_switch_is_cleaned_by_the_next_publish(
    runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    publish(runs[0], root, min_probes=8, check_model=False)
    real_switch = publish_module.switch_pointer

    class Killed(BaseException):
        pass

    def switch_then_die(*args: object) -> None:
        real_switch(*args)
        raise Killed

    # A kill leaves the staging folder too (no `finally` runs); emulate both.
    monkeypatch.setattr(publish_module, "switch_pointer", switch_then_die)
    monkeypatch.setattr(publish_module.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(Killed):
        publish(runs[1], root, min_probes=8, check_model=False)
    monkeypatch.undo()
    leftovers = [p for p in root.iterdir() if p.name.startswith(".staging-")]
    assert leftovers and (root / "versions/1/user_emb.npy").exists()
    assert EmbeddingStore(root).latest == 2
    # the user runs the same publish again: nothing to publish, but the leftovers go
    with pytest.raises(PublishError, match="nothing to publish"):
        publish(runs[1], root, min_probes=8, check_model=False)
    assert not [p for p in root.iterdir() if p.name.startswith(".staging-")]
    assert not (root / "versions/1/user_emb.npy").exists()
    assert check_store(root).ok
    assert collect_garbage(root) == []


def test_torn_manifest_is_never_left(
    runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest is written aside and renamed, so a store without CURRENT can be restored."""
    root = tmp_path / "store"
    publish(runs[0], root, min_probes=8, check_model=False)
    before = sorted(p.name for p in (root / "manifests").iterdir())
    real = publish_module.switch_pointer

    class Killed(BaseException):
        pass

    def die(*args: object) -> None:
        raise Killed

    monkeypatch.setattr(publish_module, "switch_pointer", die)
    with pytest.raises(Killed):
        publish(runs[1], root, min_probes=8, check_model=False)
    monkeypatch.setattr(publish_module, "switch_pointer", real)
    assert sorted(p.name for p in (root / "manifests").iterdir()) == [*before, "000001.json"]
    (root / "CURRENT").unlink()  # the pointer lost as well: the newest manifest is complete
    collect_garbage(root)
    assert EmbeddingStore(root).latest == 2 and check_store(root).ok
    shutil.rmtree(root)
