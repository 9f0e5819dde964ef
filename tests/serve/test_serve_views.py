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
