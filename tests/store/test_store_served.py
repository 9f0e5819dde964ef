"""Served files changed after opening are refused, never served wrong or crashed on; odd ids."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bcemb.store import EmbeddingStore, UnknownIdsError
from bcemb.store.errors import StoreUnavailableError


def _opened(store_dir: Path) -> tuple[EmbeddingStore, list[str], np.ndarray]:
    store = EmbeddingStore(store_dir)
    ids = list(store.ids("user"))
    return store, ids, store.get(ids, version=0).plain().copy()


def test_bytes_changed_in_place_are_refused(store_dir: Path) -> None:
    store, ids, expected = _opened(store_dir)
    path = store_dir / "versions/2/user_emb.npy"
    with open(path, "r+b") as fh:  # 50 bytes changed in place, as the outside test did
        fh.seek(path.stat().st_size // 2)
        fh.write(b"\x7f" * 50)
    for _ in range(2):  # and stays refused (without re-hashing each time)
        with pytest.raises(StoreUnavailableError, match=r"versions/2/user_emb\.npy: changed on disk") as err:
            store.get(ids, version=0)
        assert err.value.path == str(path)
    items = list(store.ids("item")[:3])
    store.get(items, kind="item")  # the other file is fine


def test_truncated_in_place_is_refused_not_sigbus(store_dir: Path) -> None:
    store, ids, _ = _opened(store_dir)
    path = store_dir / "versions/2/user_emb.npy"
    os.truncate(path, path.stat().st_size // 3)
    with pytest.raises(StoreUnavailableError, match=r"user_emb\.npy"):
        store.get(ids[-2:])
    os.truncate(path, 0)
    with pytest.raises(StoreUnavailableError, match=r"user_emb\.npy"):
        store.get(ids[:1])


def test_touched_or_restored_file_is_served_again(store_dir: Path, tmp_path: Path) -> None:
    store, ids, expected = _opened(store_dir)
    path = store_dir / "versions/2/user_emb.npy"
    os.utime(path, ns=(1, 1))  # metadata only: re-verified, still the same bytes
    np.testing.assert_array_equal(store.get(ids, version=0), expected)
    backup = shutil.copy(path, tmp_path / "backup.npy")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    with open(path, "r+b") as fh:
        fh.write(bytes(data))
    with pytest.raises(StoreUnavailableError):
        store.get(ids)
    with open(path, "r+b") as fh:
        fh.write(Path(backup).read_bytes())
    os.utime(path, ns=(2, 2))  # a new signature even within the clock's resolution
    np.testing.assert_array_equal(store.get(ids, version=0), expected)


def test_replaced_path_keeps_serving_the_verified_file(store_dir: Path) -> None:
    store, ids, expected = _opened(store_dir)
    path = store_dir / "versions/2/user_emb.npy"
    other = path.with_name("other.npy")
    np.save(other, np.zeros_like(np.load(path)))
    os.replace(other, path)  # a new inode at the path; ours is still the verified one
    np.testing.assert_array_equal(store.get(ids, version=0), expected)
    path.unlink()  # as a publish does with the old latest's files
    np.testing.assert_array_equal(store.get(ids, version=0), expected)


@pytest.mark.parametrize("bad", ["\ud800", "a\udfffb", "\x00"])
def test_odd_string_ids_are_unknown_ids(store_dir: Path, bad: str) -> None:
    store = EmbeddingStore(store_dir)
    with pytest.raises(UnknownIdsError, match="unknown user ids"):
        store.get([bad])
    with pytest.raises(UnknownIdsError) as err:
        store.get([store.ids("user")[0], bad], version=0)
    assert err.value.missing == [bad]


def test_ids_of_other_types(store_dir: Path) -> None:
    store = EmbeddingStore(store_dir)
    first = store.ids("user")[0]
    with pytest.raises(TypeError, match="single str"):
        store.get(first)
    with pytest.raises(TypeError, match="strings or integers"):
        store.get([1.5])
    assert store.get([]).shape == (0, store.dim())
    if first.isdigit():
        np.testing.assert_array_equal(store.get([int(first)]), store.get([first]))


def test_ids_from_a_generator_or_an_array(store_dir: Path) -> None:
    store = EmbeddingStore(store_dir)
    ids = list(store.ids("user")[:4])
    expected = store.get(ids, version=1)
    np.testing.assert_array_equal(store.get((i for i in ids), version=1), expected)
    np.testing.assert_array_equal(store.get(np.array(ids), version=1), expected)
    with pytest.raises(UnknownIdsError, match="'nope'"):
        store.get(i for i in [*ids, "nope"])
