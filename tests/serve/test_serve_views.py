"""``bcemb serve --materialize``: which versions the service keeps in memory, and reloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("orjson")
from starlette.testclient import TestClient

from bcemb.serve import create_app
from bcemb.serve.views import ViewPolicy
from bcemb.store import EmbeddingStore, publish
from bcemb.store._testing import write_fake_run


@pytest.mark.parametrize(
    ("spec", "versions", "max_bytes", "enabled"),
    [
        ("auto", None, 512 * 2**20, True),
        ("ALL", None, None, True),
        ("none", None, 512 * 2**20 * 2, False),
        ("0,2", (0, 2), None, True),
    ],
)
def test_policy_parses(spec: str, versions: object, max_bytes: object, enabled: bool) -> None:
    policy = ViewPolicy.parse(spec, budget_mb=512)
    assert policy.enabled is enabled
    if enabled:
        assert (policy.versions, policy.max_bytes) == (versions, max_bytes)


@pytest.mark.parametrize("spec", ["some", "0,x", "-1"])
def test_bad_policy_names_the_option(spec: str) -> None:
    with pytest.raises(ValueError, match="--materialize"):
        ViewPolicy.parse(spec)
    with pytest.raises(ValueError, match="--materialize-mb"):
        ViewPolicy.parse("auto", budget_mb=-1)


def test_service_answers_from_views_and_equals_the_library(store_dir: Path) -> None:
    app = create_app(store_dir, refresh_seconds=-1, views=ViewPolicy.parse("all"))
    assert app.store.materialized == [0, 1]
    library = EmbeddingStore(store_dir)
    library.materialize()
    ids = list(library.ids("user"))[:7]
    with TestClient(app) as client:
        r = client.post("/embeddings", json={"ids": ids, "version": 0, "encoding": "binary"})
    assert r.status_code == 200
    got = np.frombuffer(r.content, dtype="<f4").reshape(len(ids), -1)
    np.testing.assert_array_equal(got, library.get(ids, version=0))


def test_none_keeps_no_view(store_dir: Path) -> None:
    assert create_app(store_dir, refresh_seconds=-1, views=ViewPolicy.parse("none")).store.materialized == []


def test_a_reload_materializes_the_new_snapshot_after_serving_it(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", dims=(8, 12, 16), upto=1, seed=4)
    publish(run, tmp_path / "store")
    app = create_app(tmp_path / "store", refresh_seconds=-1, views=ViewPolicy.parse("auto"))
    assert app.store.materialized == [0]
    write_fake_run(tmp_path / "run", dims=(8, 12, 16), seed=4)
    publish(run, tmp_path / "store")
    assert app.watcher.poll()
    assert app.store.latest == 2 and app.store.materialized == [0, 1]


def test_cli_refuses_a_bad_policy_in_one_line(store_dir: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bcemb", "serve", "--store", str(store_dir), "--port", "0",
         "--materialize", "soon"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: --materialize must be")


def _answers(app: object, ids: list[str], version: int, kind: str = "user") -> bytes:
    with TestClient(app) as client:  # type: ignore[arg-type]
        r = client.post("/embeddings", json={"ids": ids, "version": version, "kind": kind})
    assert r.status_code == 200, r.text
    return r.content


def _answers_of(store: EmbeddingStore, ids: list[str], version: int, kind: str) -> bytes:
    """The JSON answer the service gives for a request that began on ``store`` (a snapshot that
    a reload may since have swapped out)."""
    from bcemb.serve.app import _Plan
    from bcemb.serve.encoding import ENCODINGS
    from bcemb.serve.request import EmbeddingsQuery

    plan = _Plan.of(store, version, kind, ENCODINGS["json"])
    return plan.body(store, EmbeddingsQuery(ids, version, kind, "json"), store.rows(ids, kind=kind))


def _same_answer(kept: bytes, plain: bytes) -> None:
    """Kept texts give the formatted answer's very bytes."""
    assert kept == plain


@pytest.mark.parametrize("kind", ["user", "item"])
def test_json_texts_answer_as_formatting_anew(store_dir: Path, kind: str) -> None:
    from bcemb.serve.views import json_texts

    kept = create_app(store_dir, refresh_seconds=-1, views=ViewPolicy.parse("all"))
    plain = create_app(store_dir, refresh_seconds=-1, views=ViewPolicy.parse("all", json_mb=0))
    latest = kept.store.latest
    assert all(json_texts(kept.store, kind, v) is not None for v in range(latest + 1))
    assert json_texts(plain.store, kind, 0) is None
    ids = list(kept.store.ids(kind))
    for picks in ([ids[3], ids[0], ids[3], ids[-1]], [ids[5]], []):
        for version in range(latest + 1):
            _same_answer(_answers(kept, picks, version, kind), _answers(plain, picks, version, kind))


def test_row_pieces_join_into_the_answers_json() -> None:
    import orjson

    from bcemb.serve.encoding import ENCODINGS, json_row_pieces, json_row_texts

    z = np.array([[0.5, -1.25], [1e-8, 3.0], [2.0, 0.1]], np.float32)
    pieces = json_row_pieces(json_row_texts(z))
    assert pieces.dtype == object and pieces.shape == (3,)
    assert all(type(p) is bytes and p.startswith(b"[") and p.endswith(b"],") for p in pieces)
    want = orjson.dumps(z[[2, 0, 2]], option=orjson.OPT_SERIALIZE_NUMPY)
    body = b"".join(ENCODINGS["json"].from_pieces(pieces[[2, 0, 2]].tolist(), True))
    assert b"[" + body + b"]" == want  # the same bytes as formatting anew, no padding
    # A block that is not the answer's last keeps its last comma (the next block follows).
    assert b"".join(ENCODINGS["json"].from_pieces(pieces[[1]].tolist(), False)).endswith(b",")
    assert json_row_pieces([]).shape == (0,)


def test_json_texts_also_serve_streamed_answers(store_dir: Path) -> None:
    from bcemb.serve.limits import ServiceLimits

    small = ServiceLimits(chunk_bytes=64)  # a few rows per block: the streamed path
    kept = create_app(store_dir, refresh_seconds=-1, limits=small, views=ViewPolicy.parse("all"))
    plain = create_app(store_dir, refresh_seconds=-1, limits=small, views=ViewPolicy.parse("none"))
    ids = list(kept.store.ids("user"))[:23]
    body = _answers(kept, ids, 0)
    _same_answer(body, _answers(plain, ids, 0))
    import orjson

    got = np.array(orjson.loads(body)["vectors"], dtype=np.float32)
    np.testing.assert_array_equal(got, EmbeddingStore(store_dir).get(ids, version=0))


def test_json_texts_keep_to_their_budget_and_skip_nonfinite_rows(store_dir: Path) -> None:
    from bcemb.serve.views import _encode_version, _pieces_bytes, json_texts

    store = EmbeddingStore(store_dir)
    encoded = _encode_version(store, 0, 2**40)
    assert encoded is not None
    texts, size = encoded
    assert size == sum(_pieces_bytes(t) for t in texts.values())
    assert size > sum(len(p) for t in texts.values() for p in t)  # the objects' headers count
    assert _encode_version(store, 0, size - 1) is None
    # A budget for exactly one version keeps the oldest materialized one only.
    app = create_app(
        store_dir, refresh_seconds=-1, views=ViewPolicy.parse("all", json_mb=(size + 1) / 2**20)
    )
    assert json_texts(app.store, "user", 0) is not None
    assert json_texts(app.store, "user", app.store.latest) is None
    view = app.store._views[("user", 0)]
    view[0, 0] = np.nan
    assert _encode_version(app.store, 0, 2**40) is None


def test_a_reload_keeps_the_new_snapshots_json_texts(tmp_path: Path) -> None:
    import gc
    import weakref

    import orjson

    from bcemb.serve.views import _TEXTS, json_texts

    run = write_fake_run(tmp_path / "run", dims=(8, 12, 16), upto=1, seed=4)
    publish(run, tmp_path / "store")
    app = create_app(tmp_path / "store", refresh_seconds=-1, views=ViewPolicy.parse("auto"))
    old = app.store
    old_texts = json_texts(old, "item", 1).copy()
    retired = weakref.ref(json_texts(old, "item", 1))
    write_fake_run(tmp_path / "run", dims=(8, 12, 16), seed=4)
    publish(run, tmp_path / "store")
    assert app.watcher.poll()
    assert json_texts(app.store, "item", 2) is not None and json_texts(app.store, "item", 1) is not None
    ids = list(app.store.ids("item"))[:5]
    expected = np.asarray(app.store.get(ids, version=1, kind="item"))
    got = np.array(orjson.loads(_answers(app, ids, 1, "item"))["vectors"], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    # Texts belong to their snapshot: the old one's version 1 was its latest, not B_2(z_2).
    assert not np.array_equal(old_texts, json_texts(app.store, "item", 1))
    # The swapped-out snapshot's texts are retired (a request still on it formats anew) ...
    assert json_texts(old, "item", 1) is None
    np.testing.assert_array_equal(
        np.array(orjson.loads(_answers_of(old, ids, 1, "item"))["vectors"], dtype=np.float32),
        np.asarray(old.get(ids, version=1, kind="item")),
    )
    gone = weakref.ref(old)
    del old
    gc.collect()
    assert gone() is None and app.store in _TEXTS  # the texts do not keep a snapshot alive
    # ... and freed by the watcher's next look, a block of rows at a time.
    assert retired() is not None
    assert not app.watcher.poll()
    assert retired() is None and not app.watcher._retired


def test_free_unused_leaves_texts_that_are_still_held() -> None:
    from bcemb.serve.encoding import json_row_pieces
    from bcemb.serve.views import free_unused

    held = json_row_pieces([b"1", b"2"])
    assert free_unused([held, json_row_pieces([b"3"])]) == [held]
    assert held.tolist() == [b"[1],", b"[2],"]  # untouched


def test_the_service_builds_the_id_tables_of_each_snapshot(store_dir: Path) -> None:
    pytest.importorskip("numba")
    from bcemb.serve import create_app

    app = create_app(store_dir, refresh_seconds=-1)
    assert set(app.store._tables) == {"user", "item"}
    ids = [str(i) for i in app.store.ids("user").tolist()][:20]
    np.testing.assert_array_equal(app.store.rows(ids), np.arange(20))


def test_a_swapped_out_snapshot_takes_its_plans_along(store_dir: Path) -> None:
    import gc

    app = create_app(store_dir, refresh_seconds=-1)
    client = TestClient(app)
    ids = [str(i) for i in app.store.ids("user").tolist()][:3]
    assert client.post("/embeddings", json={"ids": ids, "version": 0}).status_code == 200
    assert len(app._plans) == 1
    app.watcher.store = EmbeddingStore(store_dir)  # what a reload does
    gc.collect()
    assert len(app._plans) == 0  # the old snapshot (and its kept texts) can be freed
    assert client.post("/embeddings", json={"ids": ids, "version": 0}).status_code == 200
    assert len(app._plans) == 1
