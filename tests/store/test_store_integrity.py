"""A flipped byte in any stored file is detected, with an error naming the file; formats are checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bcemb.store import EmbeddingStore, IntegrityError, StoreError, StoreFormatError, load_manifest
from bcemb.store.manifest import FORMAT_VERSION, read_pointer


def flip(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[min(int(len(data) * where), len(data) - 1)] ^= 0x01
    path.write_bytes(bytes(data))


def all_files(root: Path) -> list[str]:
    m = load_manifest(root)
    assert m is not None
    pointer = read_pointer(root)
    assert pointer is not None
    return sorted(m.files) + ["CURRENT", pointer[0]]


def detected(root: Path, rel: str) -> str:
    """The message that reports the corruption of ``rel`` (open, then a full check)."""
    try:
        report = EmbeddingStore(root).check()
    except (IntegrityError, StoreFormatError) as err:
        return str(err)
    return "\n".join(report.problems)


def test_every_stored_file_is_covered(_published: Path) -> None:
    names = all_files(_published)
    for part in (
        "transform.safetensors",
        "probes.parquet",
        "model.safetensors",
        "user_emb.npy",
        "item_emb.npy",
        "ids.parquet",
        "embeddings/part-00000.parquet",
        "graph/edges.parquet",
    ):
        assert any(n.endswith(part) for n in names), part


def test_flipped_byte_in_any_file_is_named(_published: Path, tmp_path: Path) -> None:
    for i, rel in enumerate(all_files(_published)):
        for where in (0.5, 0.0, 0.999):
            root = tmp_path / f"s{i}-{where}"
            shutil.copytree(_published, root)
            flip(root / rel, where)
            message = detected(root, rel)
            assert rel in message, (
                f"flipping a byte of {rel} at {where} went unnoticed or unnamed: {message!r}"
            )
            shutil.rmtree(root)


def test_corruption_fails_the_operation_that_reads_the_file(
    store_dir: Path, tmp_path: Path
) -> None:
    flip(store_dir / "versions/2/embeddings/part-00001.parquet")
    store = EmbeddingStore(store_dir)  # opening does not read partitions
    store.get([store.ids("user")[0]])
    flip(store_dir / "versions/2/model.safetensors")
    with pytest.raises(IntegrityError, match=r"model\.safetensors"):
        store.embed_new([("new", store.ids("item")[0])])
    # the export reads the embedding matrices, checked on opening or, without that, by the export
    unchecked = EmbeddingStore(store_dir, verify=False)
    flip(store_dir / "versions/2/user_emb.npy")
    with pytest.raises(IntegrityError, match=r"user_emb\.npy: checksum mismatch"):
        unchecked.export(tmp_path / "out", version=0)
    assert not (tmp_path / "out").exists()
    with pytest.raises(IntegrityError, match=r"user_emb\.npy"):
        EmbeddingStore(store_dir)


def test_missing_files_are_named(store_dir: Path) -> None:
    (store_dir / "versions/1/transform.safetensors").unlink()
    with pytest.raises(IntegrityError, match=r"versions/1/transform\.safetensors: missing file"):
        EmbeddingStore(store_dir)


def test_empty_or_absent_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        EmbeddingStore(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="empty store"):
        EmbeddingStore(tmp_path / "empty")


def test_newer_format_fails_loudly(store_dir: Path) -> None:
    pointer = json.loads((store_dir / "CURRENT").read_text())
    pointer["format_version"] = FORMAT_VERSION + 1
    (store_dir / "CURRENT").write_text(json.dumps(pointer))
    with pytest.raises(StoreFormatError, match="newer than this bcemb supports"):
        EmbeddingStore(store_dir)


def test_newer_manifest_format_fails_loudly(store_dir: Path) -> None:
    from bcemb.store.manifest import Manifest, switch_pointer, write_manifest

    m = load_manifest(store_dir)
    assert m is not None
    newer = Manifest(**{**m.__dict__, "seq": m.seq + 1, "format_version": FORMAT_VERSION + 1})
    switch_pointer(store_dir, newer, write_manifest(store_dir, newer))
    with pytest.raises(StoreFormatError, match=r"000001\.json: store format 2 is newer"):
        EmbeddingStore(store_dir)
