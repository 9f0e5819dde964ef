"""Files that match their checksum but hold NaN/infinity (or an unreadable model) are named, not served.

A checksum says a file is the one published, not that its values are usable: a buggy
publisher or a hand-made manifest can commit NaN weights or vectors with valid checksums,
and every vector served through them would be NaN (null in JSON).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save

from bcemb.store import EmbeddingStore, IntegrityError
from bcemb.store.manifest import _pointer_check, read_pointer
from bcemb.store.store import check_store


def replace_committed(root: Path, rel: str, data: bytes) -> None:
    """Replace ``root/rel`` by ``data`` and commit a manifest whose checksum matches it."""
    (root / rel).write_bytes(data)
    pointer = read_pointer(root)
    assert pointer is not None
    d = json.loads((root / pointer[0]).read_text())
    d["seq"] += 1
    d["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    name = f"manifests/{d['seq']:06d}.json"
    raw = json.dumps(d).encode()
    (root / name).write_bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    body = {"format_version": 1, "manifest": name, "sha256": sha, "check": _pointer_check(name, sha)}
    (root / "CURRENT").write_text(json.dumps(body))


def nan_rows(path: Path) -> bytes:
    a = np.load(path)
    a[::3, 0] = np.nan
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def nan_weights(path: Path) -> bytes:
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return save({k: v * float("nan") for k, v in load_file(path).items()}, metadata=meta)


def nan_probes(path: Path) -> bytes:
    table = pq.read_table(path)
    col = table.column("embedding").combine_chunks()
    flat = np.full(len(col) * col.type.list_size, np.inf, np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat), type=col.type)
    buf = io.BytesIO()
    pq.write_table(table.set_column(2, table.schema.field(2), vectors), buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("rel", "make", "opens"),
    [
        ("versions/2/user_emb.npy", nan_rows, False),
        ("versions/1/transform.safetensors", nan_weights, False),
        ("versions/0/probes.parquet", nan_probes, True),
    ],
    ids=["embeddings", "transform", "probes"],
)
def test_non_finite_values_are_named(store_dir: Path, rel: str, make: object, opens: bool) -> None:
    replace_committed(store_dir, rel, make(store_dir / rel))  # type: ignore[operator]
    if opens:
        EmbeddingStore(store_dir)
    else:
        with pytest.raises(IntegrityError, match="NaN or infinite") as err:
            EmbeddingStore(store_dir)
        assert err.value.path.endswith(rel)
    report = check_store(store_dir)
    assert not report.ok
    assert any(rel in p and "NaN or infinite" in p for p in report.problems), report.problems


def test_unreadable_model_is_an_integrity_error_naming_it(store_dir: Path) -> None:
    rel = "versions/2/model.safetensors"
    replace_committed(store_dir, rel, b"not a model")
    store = EmbeddingStore(store_dir)
    with pytest.raises(IntegrityError, match=r"model\.safetensors: not a readable model"):
        store.embed_new([("a-new-user", store.ids("item")[0])])


@pytest.mark.parametrize("edit", ["other_kind", "empty"])
def test_wrong_ids_blame_the_id_table_not_the_embeddings(store_dir: Path, edit: str) -> None:
    rel = "versions/2/ids.parquet"
    table = pq.read_table(store_dir / rel)
    if edit == "other_kind":
        table = table.set_column(0, "kind", pa.array(["robot"] * table.num_rows))
    else:
        table = table.slice(0, 0)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    replace_committed(store_dir, rel, buf.getvalue())
    with pytest.raises(IntegrityError) as err:
        EmbeddingStore(store_dir)
    assert err.value.path.endswith(rel), err.value
    report = check_store(store_dir)
    assert any(rel in p for p in report.problems) and not any("user_emb" in p for p in report.problems)
