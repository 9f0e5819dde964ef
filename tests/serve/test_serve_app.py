"""The HTTP app through FastAPI's test client: responses, errors and limits."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("orjson")
from starlette.testclient import TestClient

from bcemb.serve import create_app
from bcemb.serve.app import json_matrix
from bcemb.store import EmbeddingStore, publish
from bcemb.store._testing import write_fake_run


@pytest.fixture()
def client(store_dir: Path) -> TestClient:
    return TestClient(create_app(store_dir, max_ids=50, max_body_bytes=4096))


def test_health_and_versions(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["latest"] == 2
    r = client.get("/versions")
    body = r.json()
    assert body["latest"] == 2 and [v["dim"] for v in body["versions"]] == [8, 12, 16]
    assert [v["embeddings"] for v in body["versions"]] == ["retired", "retired", "kept"]


def test_embeddings_in_any_version(client: TestClient, store_dir: Path) -> None:
    store = EmbeddingStore(store_dir)
    ids = [str(i) for i in store.ids("item")[:4]]
    for version in (0, 1, 2, None):
        r = client.post("/embeddings", json={"ids": ids, "version": version, "kind": "item"})
        assert r.status_code == 200
        body = r.json()
        assert body["version"] == (2 if version is None else version) and body["latest"] == 2
        assert body["ids"] == ids and body["kind"] == "item"
        got = np.array(body["vectors"], dtype=np.float32)
        np.testing.assert_array_equal(got, store.get(ids, version=version, kind="item"))
        assert body["dim"] == got.shape[1]
    r = client.post("/embeddings", json={"ids": [int(ids[0])], "version": 0, "kind": "item"})
    assert r.status_code == 200 and r.json()["ids"] == [ids[0]]


def test_base64_encoding(client: TestClient, store_dir: Path) -> None:
    store = EmbeddingStore(store_dir)
    ids = [str(i) for i in store.ids("user")[:7]]
    body = client.post("/embeddings", json={"ids": ids, "version": 1, "encoding": "base64"}).json()
    got = np.frombuffer(base64.b64decode(body["vectors_base64"]), dtype=body["dtype"]).reshape(
        body["shape"]
    )
    np.testing.assert_array_equal(got, store.get(ids, version=1))


def test_unknown_ids_and_version_are_404_naming_them(client: TestClient, store_dir: Path) -> None:
    known = str(EmbeddingStore(store_dir).ids("user")[0])
    r = client.post("/embeddings", json={"ids": [known, "ghost", "phantom"], "version": 0})
    assert r.status_code == 404
    assert "unknown user ids (2 of 3): 'ghost', 'phantom'" in r.json()["detail"]
    assert r.json()["unknown_ids"] == ["ghost", "phantom"]
    r = client.post("/embeddings", json={"ids": [known], "version": 7})
    assert (
        r.status_code == 404
        and "unknown version 7" in r.json()["detail"]
        and r.json()["versions"] == [0, 1, 2]
    )
    r = client.post("/embeddings", json={"ids": ["ghost-item"], "kind": "item"})
    assert r.status_code == 404 and "unknown item ids (1 of 1): 'ghost-item'" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": 0}, "ids"),
        ({"ids": "abc"}, "ids"),
        ({"ids": [1.5]}, "ids"),
        ({"ids": [None]}, "ids"),
        ({"ids": ["1"], "version": "one"}, "version"),
        ({"ids": ["1"], "version": 1.5}, "version"),
        ({"ids": ["1"], "kind": "users"}, "kind"),
        ({"ids": ["1"], "encoding": "xml"}, "encoding"),
        ({"ids": ["1"], "surprise": True}, "surprise"),
        ([1, 2], "body"),
    ],
)
def test_malformed_bodies_are_422(client: TestClient, body: object, field: str) -> None:
    r = client.post("/embeddings", json=body)
    assert r.status_code == 422
    assert field in json.dumps(r.json()["detail"])


def test_invalid_json_is_422(client: TestClient) -> None:
    r = client.post(
        "/embeddings", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "json" in json.dumps(r.json()).lower()


def test_request_size_limits_are_413(client: TestClient, store_dir: Path) -> None:
    ids = [str(i) for i in EmbeddingStore(store_dir).ids("user")]
    r = client.post("/embeddings", json={"ids": ids[:51]})
    assert r.status_code == 413 and "too many ids: 51 > 50" in r.json()["detail"]
    r = client.post("/embeddings", json={"ids": ["x" * 5000]})
    assert r.status_code == 413 and "larger than 4096 bytes" in r.json()["detail"]

    def chunks() -> object:  # no content-length: the limit is counted while reading
        yield b'{"ids": ["'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"]}'

    r = client.post("/embeddings", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_app_picks_up_a_new_publish(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", dims=(8, 12, 16), upto=1, seed=4)
    publish(run, tmp_path / "store")
    app = create_app(tmp_path / "store", refresh_seconds=-1)  # no thread: poll by hand
    client = TestClient(app)
    assert client.get("/health").json()["latest"] == 1
    write_fake_run(tmp_path / "run", dims=(8, 12, 16), seed=4)
    publish(run, tmp_path / "store")
    assert client.get("/health").json()["latest"] == 1  # requests never reload
    assert app.watcher.poll()
    assert client.get("/health").json()["latest"] == 2
    assert client.get("/versions").json()["versions"][2]["dim"] == 16


def test_bad_store_fails_at_creation(tmp_path: Path) -> None:
    from bcemb.store import StoreError

    with pytest.raises(StoreError, match="no store at"):
        create_app(tmp_path / "nothing")
    with pytest.raises(ValueError, match="positive"):
        create_app(tmp_path, max_ids=0)


def test_json_matrix_round_trips_float32_exactly() -> None:
    rng = np.random.default_rng(0)
    scale = np.exp(rng.uniform(-40, 40, size=(30, 17)))
    v = (rng.standard_normal((30, 17)) * scale).astype(np.float32)
    v[0, :4] = [0.0, 1.0, 1e-45, 3.4e38]
    back = np.array(json.loads(json_matrix(v)), dtype=np.float32)
    np.testing.assert_array_equal(back, v)
    assert json.loads(json_matrix(np.zeros((0, 4), np.float32))) == []
    assert json.loads(json_matrix(np.ones((1, 1), np.float32))) == [[1]]


# -- issue 12: binary encoding, streamed answers ---------------------------------------------


def test_binary_encoding_is_raw_float32_with_shape_headers(
    client: TestClient, store_dir: Path
) -> None:
    store = EmbeddingStore(store_dir)
    ids = [str(i) for i in store.ids("item")[:5]]
    r = client.post("/embeddings", json={"ids": ids, "version": 0, "kind": "item", "encoding": "binary"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert r.headers["x-bcemb-shape"] == "5,8" and r.headers["x-bcemb-dtype"] == "<f4"
    assert r.headers["x-bcemb-version"] == "0" and r.headers["x-bcemb-latest"] == "2"
    got = np.frombuffer(r.content, dtype="<f4").reshape(5, 8)
    np.testing.assert_array_equal(got, store.get(ids, version=0, kind="item"))


@pytest.mark.parametrize("encoding", ["json", "base64", "binary"])
def test_large_answers_are_streamed_in_blocks_and_exact(store_dir: Path, encoding: str) -> None:
    from bcemb.serve.limits import ServiceLimits

    # 40-byte blocks: 2 rows of 16 floats per block (base64: 3), so 100 ids make many blocks
    app = create_app(store_dir, limits=ServiceLimits(chunk_bytes=40 * 4))
    client = TestClient(app)
    store = EmbeddingStore(store_dir)
    rng = np.random.default_rng(0)
    ids = [str(i) for i in rng.choice(store.ids("user"), size=100)]
    for version in (1, 2):
        want = store.get(ids, version=version)
        r = client.post("/embeddings", json={"ids": ids, "version": version, "encoding": encoding})
        assert r.status_code == 200
        if encoding == "binary":
            got = np.frombuffer(r.content, dtype="<f4").reshape(want.shape)
        elif encoding == "base64":
            body = r.json()
            raw = base64.b64decode(body["vectors_base64"])
            got = np.frombuffer(raw, dtype="<f4").reshape(body["shape"])
            assert body["ids"] == ids
        else:
            body = r.json()
            got = np.array(body["vectors"], dtype=np.float32)
            assert body["ids"] == ids and body["dim"] == want.shape[1]
        np.testing.assert_array_equal(got, np.asarray(want))
    r = client.post("/embeddings", json={"ids": ids[:50] + ["ghost"], "encoding": encoding})
    assert r.status_code == 404 and "ghost" in r.json()["detail"]  # checked before streaming


def test_empty_request_gives_empty_answers(client: TestClient) -> None:
    assert client.post("/embeddings", json={"ids": []}).json()["vectors"] == []
    r = client.post("/embeddings", json={"ids": [], "encoding": "binary"})
    assert r.status_code == 200 and r.content == b"" and r.headers["x-bcemb-shape"] == "0,16"


# -- issue 13 point 4: no 500s -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"ids": ["\\ud800"]}', "surrogate"),
        (b'{"ids": ["a"], "kind": "\\udfff"}', "surrogate"),
        (b'{"ids": ["a"], "encoding": "\\ud83d"}', "surrogate"),
        (b'{"ids": ["a"], "\\ud800": 1}', "surrogate"),
        (b'{"ids": ["\xed\xa0\x80"]}', "utf-8"),
        (b'{"ids": [NaN]}', "json"),
        (b'{"ids": ["a"], "version": NaN}', "json"),
        (b'{"ids": ["a"], "version": Infinity}', "json"),
        (b'{"ids": ["a"], "version": -Infinity}', "json"),
        (b'{"ids": [1e400]}', "infinity"),
        (b'{"ids": ["a"], "version": 1e400}', "infinity"),
        (b'{"ids": ["a"], "version": 2.0}', "version"),
        (b'{"ids": ["a"], "version": true}', "version"),
        (b'{"ids": [true]}', "ids"),
        (b'{"ids": [["a"]]}', "ids"),
        (b'{"ids": ["a"], "kind": ["user"]}', "kind"),
        (b'{"ids": ["a"], "kind": {"a": 1}}', "kind"),
        (b"\xff\xfe\x00{", "utf-8"),
        (b"", "json"),
        (b"null", "object"),
    ],
)
def test_hostile_bodies_are_4xx_naming_the_problem(
    client: TestClient, raw: bytes, needle: str
) -> None:
    for headers in ({"content-type": "application/json"}, {}):
        r = client.post("/embeddings", content=raw, headers=headers)
        assert r.status_code == 422, (raw, r.status_code, r.text)
        assert needle.lower() in r.json()["detail"].lower()


def test_non_json_content_types_are_415(client: TestClient) -> None:
    for media in ("text/plain", "application/x-www-form-urlencoded", b"\xff"):
        r = client.post(
            "/embeddings", content=b"\xff\xfe not utf-8", headers={"content-type": media}
        )
        assert r.status_code == 415 and "application/json" in r.json()["detail"]
    r = client.post("/embeddings", json={"ids": []}, headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200


def test_huge_ints_and_versions_are_4xx(client: TestClient) -> None:
    r = client.post("/embeddings", content=b'{"ids": [99999999999999999999999999]}')
    assert r.status_code == 422
    r = client.post("/embeddings", json={"ids": ["a"], "version": 2**63})
    assert r.status_code == 404 and "unknown version" in r.json()["detail"]
    r = client.post("/embeddings", json={"ids": ["a"], "version": -1})
    assert r.status_code == 404


# -- issue 13 point 8: no echo of huge ids, docs off by default --------------------------------


def test_unknown_id_404_does_not_echo_a_huge_id(store_dir: Path) -> None:
    client = TestClient(create_app(store_dir, max_body_bytes=8 << 20))
    huge = "x" * (4 << 20)
    r = client.post("/embeddings", json={"ids": [huge, "ghost"]})
    assert r.status_code == 404 and len(r.content) < 2000
    assert r.json()["unknown_ids"][1] == "ghost"
    assert r.json()["unknown_ids"][0].endswith(f"...({4 << 20} characters)")
    r = client.post("/embeddings", json={"ids": ["a"], "kind": huge})
    assert r.status_code == 422 and len(r.content) < 2000


def test_docs_are_off_by_default_and_opt_in(store_dir: Path) -> None:
    client = TestClient(create_app(store_dir))
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404
    with_docs = TestClient(create_app(store_dir, docs=True))
    schema = with_docs.get("/openapi.json").json()
    assert "/embeddings" in schema["paths"]
    assert with_docs.get("/docs").status_code == 200
    assert with_docs.post("/embeddings", json={"ids": []}).status_code == 200  # not FastAPI's


def test_unknown_routes_and_methods(client: TestClient) -> None:
    assert client.get("/nothing").status_code == 404
    r = client.get("/embeddings")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


# -- store errors ------------------------------------------------------------------------------


def test_store_unavailable_is_503_naming_the_file(
    client: TestClient, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bcemb.store.errors import StoreUnavailableError

    def changed(*args: object, **kwargs: object) -> None:
        raise StoreUnavailableError(
            "versions/2/user_emb.npy changed since it was opened", path="versions/2/user_emb.npy"
        )

    # Every read checks the file (also answers joined from kept JSON texts).
    monkeypatch.setattr(EmbeddingStore, "ensure_unchanged", changed)
    r = client.post("/embeddings", json={"ids": ["1"]})
    assert r.status_code == 503 and "user_emb.npy" in r.json()["detail"]
    assert r.json()["file"] == "versions/2/user_emb.npy"
