"""Crafted manifests (valid checksums, hostile content) fail as store errors, never as crashes.

A manifest and its pointer carry checksums, not signatures: anyone who can write the store
can commit a manifest of their own. Each field replaced by a value of another type (or an
absurd number, or a deep nesting) used to surface as ``TypeError``, ``OverflowError``,
``KeyError`` or ``RecursionError`` from ``EmbeddingStore``, ``store check`` and ``gc``
(a traceback from the CLI).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bcemb.cli import app
from bcemb.store import EmbeddingStore, StoreError, collect_garbage
from bcemb.store.manifest import _pointer_check, read_pointer
from bcemb.store.store import check_store

HOSTILE = [None, [], {}, "x", -1, 10**30, 1.5, True, float("inf"), float("nan")]


def nodes(obj: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path of a JSON document (the root excluded)."""
    if at:
        yield at
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield from nodes(v, (*at, k))


def commit(root: Path, raw: bytes) -> None:
    """Write ``raw`` as a new manifest and point ``CURRENT`` at it with matching checksums."""
    name = "manifests/000099.json"
    (root / name).write_bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    body = {"format_version": 1, "manifest": name, "sha256": sha, "check": _pointer_check(name, sha)}
    (root / "CURRENT").write_text(json.dumps(body))


def only_store_errors(root: Path) -> None:
    for action in (
        lambda: EmbeddingStore(root, verify=False).check(),
        lambda: check_store(root),
        lambda: collect_garbage(root),
    ):
        try:
            action()
        except StoreError:
            pass


def test_every_field_of_another_type_is_a_store_error(store_dir: Path) -> None:
    pointer = read_pointer(store_dir)
    assert pointer is not None
    original = json.loads((store_dir / pointer[0]).read_text())
    keep = {p.name for p in (store_dir / "versions").rglob("*")}
    tried = 0
    for i, at in enumerate(nodes(original)):
        if len(at) > 3 and at[0] == "files":
            continue  # one checksum entry stands for all
        # two hostile values per field, rotating, so that every value meets many fields
        for value in (HOSTILE[i % len(HOSTILE)], HOSTILE[(i + 3) % len(HOSTILE)]):
            d = copy.deepcopy(original)
            target = d
            for k in at[:-1]:
                target = target[k]
            target[at[-1]] = value
            commit(store_dir, json.dumps(d).encode())
            only_store_errors(store_dir)
            tried += 1
    assert tried > 100
    assert {p.name for p in (store_dir / "versions").rglob("*")} == keep, "gc deleted stored files"


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"format_version": 1, "seq": 1e400}',
        b"\xff\xfe\x00",
        b'{"format_version": 1, "seq": 1, "created": "", "event": "", "latest": 0, "versions": [],'
        b' "files": {"versions/a": {"sha256": "x", "bytes": 1e400}}}',
    ],
    ids=["deep", "huge-number", "not-utf8", "huge-size"],
)
def test_absurd_manifest_bytes_are_store_errors(store_dir: Path, raw: bytes) -> None:
    commit(store_dir, raw)
    only_store_errors(store_dir)
    result = CliRunner().invoke(app, ["store", "check", "--store", str(store_dir)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "000099.json" in result.output


def test_deeply_nested_pointer_is_named(store_dir: Path) -> None:
    (store_dir / "CURRENT").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(StoreError, match="CURRENT"):
        EmbeddingStore(store_dir)
