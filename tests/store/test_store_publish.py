"""Publishing runs into a store: layout, manifest, continuation, keep-all, retirement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from bcemb.store import (
    FORMAT_VERSION,
    EmbeddingStore,
    PublishError,
    StoreError,
    collect_garbage,
    load_manifest,
    publish,
    retire,
)
from bcemb.store._testing import write_fake_run
from bcemb.store.io import sha256_file

DIMS = (8, 12, 16)


def test_manifest_describes_every_version(store_dir: Path, run_dir: Path) -> None:
    m = load_manifest(store_dir)
    assert m is not None and m.format_version == FORMAT_VERSION and m.seq == 0 and m.latest == 2
    assert [v.dim for v in m.versions] == list(DIMS)
    assert [v.parent for v in m.versions] == [None, 0, 1]
    assert all(v.method == "bc-aligner" and v.lam == 16.0 and v.created for v in m.versions)
    assert m.versions[0].transform is None
    assert m.versions[2].transform == {"kind": "linear", "in_dim": 16, "out_dim": 12}
    assert m.run["times"] and m.run["path"] == str(run_dir.resolve())
    # keep-latest: only the latest has embeddings, model and graph; every version its probes.
    assert [v.embeddings_kept for v in m.versions] == [False, False, True]
    assert [v.model_kept for v in m.versions] == [False, False, True]
    assert all(v.num_probes >= 32 for v in m.versions)
    # every stored file is listed with its checksum, and nothing else is stored
    on_disk = {
        p.relative_to(store_dir).as_posix()
        for p in (store_dir / "versions").rglob("*")
        if p.is_file()
    }
    assert on_disk == set(m.files)
    for rel, entry in m.files.items():
        assert sha256_file(store_dir / rel) == entry.sha256
        assert (store_dir / rel).stat().st_size == entry.bytes
    # the transforms are the run's files, byte for byte
    for k in (1, 2):
        assert (
            sha256_file(run_dir / f"version_{k}" / "transform.safetensors")
            == m.files[f"versions/{k}/transform.safetensors"].sha256
        )
    assert m.versions[2].model_check is not None and m.versions[2].model_check["ok"]


def test_probe_sample_size(tmp_path: Path, run_dir: Path) -> None:
    m = publish(run_dir, tmp_path / "s", probe_fraction=0.5, min_probes=10)
    for v in m.versions:
        assert v.num_probes == int(np.ceil(0.5 * (v.num_users + v.num_items)))
    m = publish(run_dir, tmp_path / "t", probe_fraction=0.0, min_probes=10_000)
    assert all(v.num_probes == v.num_users + v.num_items for v in m.versions), (
        "capped at the node count"
    )


def test_nothing_to_publish_and_unfinished_runs(
    store_dir: Path, run_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(PublishError, match="nothing to publish"):
        publish(run_dir, store_dir)
    with pytest.raises(PublishError, match="no training run"):
        publish(tmp_path / "missing", tmp_path / "s")
    run = write_fake_run(tmp_path / "run", dims=(8, 8))
    (run / "version_0" / "done.json").unlink()
    with pytest.raises(PublishError, match="no finished version"):
        publish(run, tmp_path / "s")


def test_bad_run_contents(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", dims=(8, 12))
    emb = load_file(run / "version_1" / "embeddings.safetensors")
    emb["user_emb"][3, 1] = float("nan")
    from safetensors.torch import save_file

    save_file(emb, run / "version_1" / "embeddings.safetensors")
    with pytest.raises(PublishError, match="NaN"):
        publish(run, tmp_path / "s")
    assert load_manifest(tmp_path / "s") is None, "a failed first publish leaves an empty store"


def test_continuation_publishes_the_new_versions(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", dims=DIMS, upto=1, seed=3)
    root = tmp_path / "store"
    first = publish(run, root, min_probes=16)
    assert first.latest == 1
    old = EmbeddingStore(root)
    users = list(old.ids("user")[:5])
    z1_before = old.get(users, version=1)
    write_fake_run(tmp_path / "run", dims=DIMS, seed=3)  # the run goes on to version 2
    second = publish(run, root, min_probes=16)
    assert (second.seq, second.latest, second.previous) == (1, 2, first.name)
    assert not second.versions[1].embeddings_kept and not second.versions[1].model_kept
    assert (
        not (root / "versions/1/user_emb.npy").exists()
        and not (root / "versions/1/model.safetensors").exists()
    )
    assert (root / "versions/1/transform.safetensors").exists() and (
        root / "versions/1/probes.parquet"
    ).exists()
    # version 1's transform and probes are the ones published first, untouched
    for rel in ("versions/1/transform.safetensors", "versions/1/probes.parquet"):
        assert second.files[rel] == first.files[rel]
    # the already open snapshot still serves the old state (its arrays are memory-mapped)
    np.testing.assert_array_equal(old.get(users, version=1), z1_before)
    new = EmbeddingStore(root)
    assert new.latest == 2 and new.get(users, version=1).shape == (5, 12)
    assert (root / "manifests/000000.json").exists(), "manifests are append-only"


def test_other_lineage_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    publish(write_fake_run(tmp_path / "a", dims=DIMS, upto=1, seed=1), root)
    other = write_fake_run(tmp_path / "b", dims=DIMS, seed=2)
    with pytest.raises(PublishError, match="not a continuation"):
        publish(other, root)
    assert EmbeddingStore(root).latest == 1


def test_keep_all_and_retire(tmp_path: Path, run_dir: Path) -> None:
    root = tmp_path / "store"
    m = publish(run_dir, root, keep_all=True)
    assert all(v.embeddings_kept and v.model_kept for v in m.versions)
    assert [("graph" in v.files) for v in m.versions] == [False, False, True]
    usage_all = EmbeddingStore(root).usage()
    assert usage_all.stored_bytes > usage_all.keep_latest_bytes
    m2 = retire(root, 0)
    assert (m2.seq, m2.event) == (1, "retire")
    assert not m2.versions[0].embeddings_kept and not (root / "versions/0/user_emb.npy").exists()
    assert (root / "versions/0/probes.parquet").exists()
    with pytest.raises(StoreError, match="already retired"):
        retire(root, 0)
    with pytest.raises(StoreError, match="is the latest"):
        retire(root, 2)
    with pytest.raises(StoreError, match="unknown version 7"):
        retire(root, 7)
    store = EmbeddingStore(root)
    assert store.check().ok


def test_usage_compares_keep_latest_with_keep_all(tmp_path: Path, run_dir: Path) -> None:
    publish(run_dir, tmp_path / "latest")
    publish(run_dir, tmp_path / "all", keep_all=True)
    latest_only = EmbeddingStore(tmp_path / "latest").usage()
    keep_all = EmbeddingStore(tmp_path / "all").usage()
    assert latest_only.keep_latest_bytes < latest_only.keep_all_bytes
    assert latest_only.stored_bytes == latest_only.keep_latest_bytes
    # the estimate of retired embeddings is close to what keep-all really stores
    for est, real in zip(latest_only.versions, keep_all.versions, strict=True):
        assert est.model_bytes == real.model_bytes
        assert abs(est.embedding_bytes - real.embedding_bytes) <= 0.3 * real.embedding_bytes
    assert 0.0 < latest_only.saving < 1.0


def test_garbage_of_interrupted_publish_is_collected(store_dir: Path) -> None:
    (store_dir / "versions" / "3").mkdir()
    (store_dir / "versions" / "3" / "junk.npy").write_bytes(b"x")
    (store_dir / ".staging-deadbeef").mkdir()
    (store_dir / "manifests" / "000001.json").write_text("{}")
    removed = collect_garbage(store_dir)
    assert len(removed) == 3
    assert not (store_dir / "versions" / "3").exists()
    assert EmbeddingStore(store_dir).check().ok


def test_manifest_is_json_with_format_first(store_dir: Path) -> None:
    pointer = json.loads((store_dir / "CURRENT").read_text())
    raw = json.loads((store_dir / pointer["manifest"]).read_text())
    assert next(iter(raw)) == "format_version"
