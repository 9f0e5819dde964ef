"""Manifests are data: crafted paths never leave the store; a missing CURRENT never empties it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bcemb.store import EmbeddingStore, IntegrityError, StoreError, collect_garbage, load_manifest, publish
from bcemb.store.errors import MissingPointerError
from bcemb.store.manifest import FORMAT_VERSION, _pointer_check, read_pointer
from bcemb.store.store import check_store


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file (symlinks not followed), the lock aside."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if name != ".lock" and not p.is_symlink():
                out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def craft(root: Path, edit: Any) -> str:
    """Commit a new manifest made by ``edit(dict)`` from the current one, with a valid pointer."""
    pointer = read_pointer(root)
    assert pointer is not None
    d = json.loads((root / pointer[0]).read_text())
    d["seq"] += 1
    edit(d)
    name = f"manifests/{d['seq']:06d}.json"
    raw = json.dumps(d).encode()
    (root / name).write_bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    body = {"format_version": FORMAT_VERSION, "manifest": name, "sha256": sha, "check": _pointer_check(name, sha)}
    (root / "CURRENT").write_text(json.dumps(body))
    return name


def repoint(d: dict[str, Any], role: str, new: str, version: int = 2) -> None:
    """Point ``role`` of ``version`` at ``new`` (keeping the old file's checksum entry)."""
    old = d["versions"][version]["files"][role]
    d["versions"][version]["files"][role] = new
    d["files"][new] = d["files"].pop(old)


# ----------------------------------------------------------------------------- path escape


@pytest.mark.parametrize(
    "bad",
    ["/etc/passwd", "../outside/user_emb.npy", "versions/2/../../../outside/user_emb.npy",
     "versions/2/./user_emb.npy", "versions//2/user_emb.npy", "graph.npy", "versions\\2\\x.npy"],
)
def test_crafted_paths_are_refused_on_read(store_dir: Path, bad: str) -> None:
    craft(store_dir, lambda d: repoint(d, "user_emb", bad))
    with pytest.raises(IntegrityError, match="malformed manifest"):
        EmbeddingStore(store_dir)
    with pytest.raises(IntegrityError, match="malformed manifest"):
        load_manifest(store_dir)
    report = check_store(store_dir)
    assert not report.ok and "malformed manifest" in report.problems[0]


def test_pointer_to_a_file_outside_manifests_is_refused(store_dir: Path) -> None:
    name = "../outside.json"
    body = {"format_version": FORMAT_VERSION, "manifest": name, "sha256": "0" * 64,
            "check": _pointer_check(name, "0" * 64)}
    (store_dir / "CURRENT").write_text(json.dumps(body))
    with pytest.raises(IntegrityError, match="CURRENT: store pointer names"):
        EmbeddingStore(store_dir)


def test_symlink_out_of_the_store_is_refused_on_read_serve_and_check(
    store_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(store_dir / "versions/2", outside)  # identical bytes: checksums match
    shutil.rmtree(store_dir / "versions/2")
    (store_dir / "versions/2").symlink_to(outside)
    with pytest.raises(IntegrityError, match="outside the store"):
        EmbeddingStore(store_dir)
    with pytest.raises(IntegrityError, match="outside the store"):
        EmbeddingStore(store_dir, verify=False)  # what `serve --no-verify` and `ls` open
    report = check_store(store_dir)
    assert not report.ok
    assert all("outside the store" in p for p in report.problems)
    assert any("versions/2/user_emb.npy" in p for p in report.problems)


def test_gc_never_deletes_through_a_symlink(store_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    (store_dir / "versions/9").symlink_to(outside)  # unreferenced: the link goes, not its target
    (store_dir / "versions/1/link.npy").symlink_to(outside / "precious.txt")
    removed = collect_garbage(store_dir)
    assert store_dir / "versions/9" in removed and store_dir / "versions/1/link.npy" in removed
    assert (outside / "precious.txt").read_text() == "keep me"
    assert check_store(store_dir).ok


def test_publish_never_deletes_outside_the_store(
    tmp_path: Path, run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from bcemb.store._testing import write_fake_run

    runs = tmp_path_factory.mktemp("esc")
    v1, v2 = write_fake_run(runs / "v1", upto=1, seed=3), write_fake_run(runs / "v2", seed=3)
    root = tmp_path / "store"
    publish(v1, root, min_probes=8, check_model=False)
    outside = tmp_path / "outside"
    shutil.copytree(root / "versions/1", outside)
    shutil.rmtree(root / "versions/1")
    (root / "versions/1").symlink_to(outside)
    before = snapshot(outside)
    with pytest.raises(IntegrityError, match="outside the store"):
        publish(v2, root, min_probes=8, check_model=False)
    assert snapshot(outside) == before
    # the same with a lexical escape: refused when the manifest is read, nothing deleted
    (root / "versions/1").unlink()
    shutil.copytree(outside, root / "versions/1")
    craft(root, lambda d: repoint(d, "user_emb", "versions/1/../../outside/user_emb.npy", 1))
    with pytest.raises(IntegrityError, match="malformed manifest"):
        publish(v2, root, min_probes=8, check_model=False)
    with pytest.raises(IntegrityError, match="malformed manifest"):
        collect_garbage(root)
    assert snapshot(outside) == before


# ----------------------------------------------------------------------------- missing CURRENT


def test_missing_pointer_is_not_an_empty_store(store_dir: Path) -> None:
    expected = EmbeddingStore(store_dir)
    ids = list(expected.ids("user")[:5])
    vectors = expected.get(ids, version=0)
    before = snapshot(store_dir)
    (store_dir / "CURRENT").unlink()
    with pytest.raises(MissingPointerError, match="store gc"):
        EmbeddingStore(store_dir)
    with pytest.raises(MissingPointerError):
        load_manifest(store_dir)
    report = check_store(store_dir)
    assert not report.ok and "CURRENT" in report.problems[0]
    # gc restores the pointer instead of deleting the 24 stored files
    assert collect_garbage(store_dir) == []
    after = snapshot(store_dir)
    assert {k: v for k, v in after.items() if k != "CURRENT"} == {
        k: v for k, v in before.items() if k != "CURRENT"
    }
    restored = EmbeddingStore(store_dir)
    assert restored.manifest.name == expected.manifest.name
    assert (restored.get(ids, version=0) == vectors).all()


def test_missing_pointer_and_no_intact_manifest_refuses(store_dir: Path) -> None:
    before = snapshot(store_dir)
    (store_dir / "CURRENT").unlink()
    (store_dir / "versions/2/user_emb.npy").write_bytes(b"damaged")  # the only manifest fails
    before["versions/2/user_emb.npy"] = hashlib.sha256(b"damaged").hexdigest()
    del before["CURRENT"]
    with pytest.raises(StoreError, match="none of its manifests is intact.*nothing was changed"):
        collect_garbage(store_dir)
    assert snapshot(store_dir) == before


def test_publish_restores_a_missing_pointer(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from bcemb.store._testing import write_fake_run

    runs = tmp_path_factory.mktemp("mp")
    v1, v2 = write_fake_run(runs / "v1", upto=1, seed=4), write_fake_run(runs / "v2", seed=4)
    root = tmp_path / "store"
    publish(v1, root, min_probes=8, check_model=False)
    (root / "CURRENT").unlink()
    m = publish(v2, root, min_probes=8, check_model=False)
    assert m.latest == 2 and m.seq == 1
    assert check_store(root).ok
