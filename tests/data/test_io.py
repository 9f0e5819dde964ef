"""Tests of saving and loading evolving graphs as Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bcemb.data.datasets.synthetic import make_synthetic
from bcemb.data.graph import DataError, EvolvingGraph
from bcemb.data.io import GRAPH_FORMAT_VERSION, load_graph, save_graph


@pytest.fixture(scope="module")
def graph() -> EvolvingGraph:
    return make_synthetic(num_users=40, num_items=50, num_edges=400, seed=1)


def assert_same(a: EvolvingGraph, b: EvolvingGraph) -> None:
    for col in ("user", "item", "rating", "timestamp", "user_ids", "item_ids"):
        x, y = getattr(a, col), getattr(b, col)
        assert x.dtype == y.dtype, col
        np.testing.assert_array_equal(x, y, err_msg=col)
    assert a.name == b.name
    assert list(a.item_features) == list(b.item_features)
    for name, g in a.item_features.items():
        h = b.item_features[name]
        assert g.vocab == h.vocab
        np.testing.assert_array_equal(g.indices, h.indices)
        np.testing.assert_array_equal(g.offsets, h.offsets)


def test_round_trip_with_features(graph: EvolvingGraph, tmp_path: Path) -> None:
    assert graph.item_features, "the synthetic graph should carry item features"
    save_graph(graph, tmp_path / "g")
    assert_same(graph, load_graph(tmp_path / "g"))


def test_round_trip_string_ids_and_float_times(tmp_path: Path) -> None:
    g = EvolvingGraph.from_log(
        ["ann", "bob", "ann", "cy"],
        ["x", "y", "y", "x"],
        [5, 4, 3, 1],
        [1.5, 2.0, 2.5, 3.0],
        item_features={"brand": {"x": ["acme"], "y": []}},
        name="strings",
    )
    save_graph(g, tmp_path / "g")
    back = load_graph(tmp_path / "g")
    assert_same(g, back)
    assert back.user_ids.tolist() == ["ann", "bob", "cy"]
    assert back.item_features["brand"].bag(0) == ["acme"]


def test_overwrite_is_atomic_and_optional(graph: EvolvingGraph, tmp_path: Path) -> None:
    other = make_synthetic(num_users=30, num_items=30, num_edges=200, seed=2)
    save_graph(graph, tmp_path / "g")
    with pytest.raises(FileExistsError):
        save_graph(other, tmp_path / "g", overwrite=False)
    save_graph(other, tmp_path / "g")
    assert_same(other, load_graph(tmp_path / "g"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"], "no temporary folders are left"


def test_failed_write_leaves_previous_folder(
    graph: EvolvingGraph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_graph(graph, tmp_path / "g")
    import bcemb.data.io as gio

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(gio, "_write_tables", boom)
    with pytest.raises(OSError, match="disk full"):
        save_graph(
            make_synthetic(num_users=30, num_items=30, num_edges=200, seed=2), tmp_path / "g"
        )
    assert_same(graph, load_graph(tmp_path / "g"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


@pytest.mark.parametrize(
    "name",
    [
        "edges.parquet",
        "users.parquet",
        "items.parquet",
        "features/0.parquet",
        "features/1.vocab.json",
    ],
)
def test_flipped_byte_is_named(graph: EvolvingGraph, tmp_path: Path, name: str) -> None:
    save_graph(graph, tmp_path / "g")
    path = tmp_path / "g" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        load_graph(tmp_path / "g")


def test_missing_files_and_folder(graph: EvolvingGraph, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no graph folder"):
        load_graph(tmp_path / "nope")
    save_graph(graph, tmp_path / "g")
    (tmp_path / "g" / "items.parquet").unlink()
    with pytest.raises(DataError, match=r"missing file: .*items\.parquet"):
        load_graph(tmp_path / "g")
    (tmp_path / "g" / "graph.json").unlink()
    with pytest.raises(DataError, match=r"graph\.json"):
        load_graph(tmp_path / "g")


def test_corrupt_and_newer_metadata(graph: EvolvingGraph, tmp_path: Path) -> None:
    save_graph(graph, tmp_path / "g")
    meta_path = tmp_path / "g" / "graph.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format_version": GRAPH_FORMAT_VERSION + 1}))
    with pytest.raises(DataError, match="newer"):
        load_graph(tmp_path / "g")
    meta_path.write_text("{not json")
    with pytest.raises(DataError, match=r"corrupt graph metadata .*graph\.json"):
        load_graph(tmp_path / "g")


def test_inconsistent_tables_are_rejected(tmp_path: Path) -> None:
    g = EvolvingGraph.from_log([1, 2], [3, 4], [5, 5], [0, 1])
    g.item_features["brand"] = make_synthetic(
        num_users=30, num_items=30, num_edges=200
    ).item_features["brand"]
    with pytest.raises(DataError, match="feature group 'brand' covers"):
        save_graph(g, tmp_path / "g")
