"""Reading a store: get, the composed chain, export, new nodes, the compatibility monitor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from bcemb.models.io import load_transform
from bcemb.store import EmbeddingStore, UnknownIdsError, UnknownVersionError, publish
from bcemb.store._testing import write_fake_run
from bcemb.store.io import table_vectors
from bcemb.transforms import TransformChain


@pytest.fixture()
def store(store_dir: Path) -> EmbeddingStore:
    return EmbeddingStore(store_dir)


def run_embeddings(run_dir: Path, k: int) -> tuple[np.ndarray, np.ndarray]:
    t = load_file(run_dir / f"version_{k}" / "embeddings.safetensors")
    return t["user_emb"].numpy(), t["item_emb"].numpy()


def test_get_latest_round_trips_the_run(store: EmbeddingStore, run_dir: Path) -> None:
    users, items = run_embeddings(run_dir, 2)
    assert store.latest == 2 and store.versions == [0, 1, 2]
    rows = [5, 0, 17, 5]
    ids = [store.ids("user")[r] for r in rows]
    np.testing.assert_array_equal(store.get(ids), users[rows])
    np.testing.assert_array_equal(store.get(ids, version=2), users[rows])
    item_ids = list(store.ids("item"))
    np.testing.assert_array_equal(store.get(item_ids, kind="item"), items)
    assert store.get([], version=0).shape == (0, 8)


def test_integer_and_string_ids_are_the_same_node(store: EmbeddingStore) -> None:
    first = store.ids("user")[0]
    assert first.isdigit(), "the synthetic graph has integer ids"
    np.testing.assert_array_equal(store.get([int(first)], version=1), store.get([first], version=1))
    with pytest.raises(TypeError, match="strings or integers"):
        store.get([1.5])


@pytest.mark.parametrize("version", [0, 1])
def test_composed_product_equals_stepwise_application(
    store: EmbeddingStore, run_dir: Path, version: int
) -> None:
    chain = TransformChain(
        [load_transform(run_dir / f"version_{k}" / "transform.safetensors") for k in (1, 2)]
    )
    users, _ = run_embeddings(run_dir, 2)
    expected = chain.apply_stepwise(torch.from_numpy(users), version).numpy()
    got = store.get(list(store.ids("user")), version=version)
    assert got.shape == (len(users), (8, 12)[version]) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        store.matrix(version), chain.matrix(version).numpy(), rtol=1e-5, atol=1e-6
    )
    assert store.matrix(version) is store.matrix(version), "the composed product is cached"


def test_unknown_ids_versions_and_kinds(store: EmbeddingStore) -> None:
    known = store.ids("user")[0]
    with pytest.raises(
        UnknownIdsError, match=r"unknown user ids \(2 of 3\): 'nope', 'nada'"
    ) as err:
        store.get(["nope", known, "nada"])
    assert err.value.missing == ["nope", "nada"]
    with pytest.raises(
        UnknownVersionError, match=r"unknown version 3; the store has versions 0\.\.2"
    ):
        store.get([known], version=3)
    with pytest.raises(UnknownVersionError):
        store.get([known], version=-1)
    with pytest.raises(ValueError, match="kind must be"):
        store.get([known], kind="users")


def read_export(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    table = pq.read_table(sorted(path.glob("part-*.parquet")))
    return (table.column("kind").to_pylist(), table.column("id").to_pylist(), table_vectors(table))


def test_issue13_lone_surrogate_id_is_an_unknown_id(store: EmbeddingStore) -> None:
    # pandas turned a list of strings into Arrow, which raised UnicodeEncodeError
    with pytest.raises(UnknownIdsError, match="unknown user ids"):
        store.get(["\ud800"], version=0)
    known = str(store.ids("user")[0])
    with pytest.raises(UnknownIdsError) as err:
        store.get([known, "a\udfffb"], version=0)
    assert err.value.missing == ["a\udfffb"]


@pytest.mark.parametrize("version", [0, 1, 2])
def test_export_round_trips_get(store: EmbeddingStore, tmp_path: Path, version: int) -> None:
    result = store.export(tmp_path / "out", version=version)
    assert result.rows == store.num_nodes("user") + store.num_nodes("item") and result.parts >= 4
    kinds, ids, vectors = read_export(tmp_path / "out")
    assert vectors.shape == (result.rows, store.dim(version))
    users = [i for k, i in zip(kinds, ids, strict=True) if k == "user"]
    assert users == list(store.ids("user"))
    np.testing.assert_allclose(
        vectors[: len(users)], store.get(users, version=version), rtol=1e-5, atol=1e-6
    )
    items = ids[len(users) :]
    np.testing.assert_allclose(
        vectors[len(users) :], store.get(items, version=version, kind="item"), rtol=1e-5, atol=1e-6
    )
    meta = json.loads((tmp_path / "out" / "_export.json").read_text())
    assert (meta["version"], meta["latest"], meta["rows"]) == (version, 2, result.rows)
    assert (
        pq.read_schema(tmp_path / "out" / "part-00000.parquet").metadata[b"bcemb.version"]
        == str(version).encode()
    )


def test_export_refuses_to_overwrite_unless_asked(store: EmbeddingStore, tmp_path: Path) -> None:
    store.export(tmp_path / "out", version=0)
    with pytest.raises(FileExistsError, match="overwrite"):
        store.export(tmp_path / "out", version=1)
    store.export(tmp_path / "out", version=1, overwrite=True)
    assert json.loads((tmp_path / "out" / "_export.json").read_text())["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "store"], (
        "no temporary folders are left"
    )
    with pytest.raises(ValueError, match="unknown export engine"):
        store.export(tmp_path / "x", engine="spark")


def test_embed_new_reproduces_stored_nodes(store: EmbeddingStore) -> None:
    ids = list(store.ids("user")[:6])
    for version in (0, 2):
        out = store.embed_new([], ids=ids, version=version)
        assert out.ids == tuple(ids) and out.version == version
        np.testing.assert_allclose(
            out.vectors, store.get(ids, version=version), rtol=1e-4, atol=1e-5
        )


def test_embed_new_nodes(store: EmbeddingStore) -> None:
    item = store.ids("item")[3]
    brand = store._model_and_graph()[1].item_features["brand"].vocab[0]
    edges = [("new-user", item), ("new-user", "new-item"), (store.ids("user")[0], "new-item")]
    feats = {"brand": {"new-item": [brand, "not-a-brand"]}}
    users = store.embed_new(edges, item_features=feats, version=1)
    assert users.ids == ("new-user",) and users.vectors.shape == (1, 12)
    assert np.isfinite(users.vectors).all()
    items = store.embed_new(edges, item_features=feats, kind="item")
    assert items.ids == ("new-item",) and items.vectors.shape == (1, 16)
    # the version-1 vector is the latest one through the chain, like stored nodes
    latest = store.embed_new(edges, item_features=feats)
    np.testing.assert_allclose(
        users.vectors, latest.vectors @ store.matrix(1).T, rtol=1e-5, atol=1e-6
    )
    # an item with features and no edge is embedded from its features alone
    lone = store.embed_new([], item_features={"brand": {"lonely": [brand]}}, kind="item")
    assert lone.ids == ("lonely",)


def test_embed_new_rejects_bad_input(store: EmbeddingStore) -> None:
    item = store.ids("item")[0]
    with pytest.raises(ValueError, match="unknown item feature groups"):
        store.embed_new([("u", item)], item_features={"colour": {"x": ["red"]}})
    with pytest.raises(ValueError, match="only new items take features"):
        store.embed_new([("u", item)], item_features={"brand": {item: ["x"]}})
    with pytest.raises(UnknownIdsError, match="ghost"):
        store.embed_new([("u", item)], ids=["ghost"])
    with pytest.raises(ValueError, match="pairs"):
        store.embed_new([("u", item, 5)])


def test_check_reports_alignment_error_on_probes(tmp_path: Path, store: EmbeddingStore) -> None:
    report = store.check()
    assert report.ok and report.latest == 2 and len(report.versions) == 3
    assert report.versions[2].mean_error == 0.0, "the latest version checks against itself"
    assert all(v.mean_error > 1e-2 and v.missing == 0 for v in report.versions[:2]), (
        "random transforms do not align"
    )
    # known answer: older embeddings that are exactly the chain of the latest align perfectly
    run = write_fake_run(tmp_path / "aligned", dims=(8, 12, 16), aligned=True)
    publish(run, tmp_path / "s")
    aligned = EmbeddingStore(tmp_path / "s").check()
    assert aligned.ok
    assert all(v.mean_error < 1e-5 and v.num_probes > 0 for v in aligned.versions)
