"""Space fingerprints and vectors that carry them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bcemb.store import EmbeddingStore, publish
from bcemb.store._testing import write_fake_run
from bcemb.store.fingerprint import (
    SpaceMismatchError,
    SpaceVectors,
    manifest_space,
    parse_space,
    run_space,
    space_of,
)


def test_get_returns_vectors_with_their_space(store_dir: Path) -> None:
    s = EmbeddingStore(store_dir)
    ids = [str(i) for i in s.ids("user")[:4]]
    z0, z1 = s.get(ids, version=0), s.get(ids, version=1)
    assert isinstance(z0, np.ndarray) and isinstance(z0, SpaceVectors)
    assert z0.version == 0 and z0.space == s.space(0) and space_of(z1) == s.space(1)
    assert parse_space(z0.space)[0] == 0 and z0.space != s.space(1)
    # Same space: everything an array does still works, joins keep the tag.
    both = np.concatenate([z0[:2], s.get(ids[2:], version=0)])
    assert both.space == z0.space
    np.testing.assert_array_equal(both, z0)
    assert (z0 == s.get(ids, version=0)).all()


@pytest.mark.parametrize(
    "combine",
    [
        lambda a, b: np.concatenate([a, b]),
        lambda a, b: np.vstack([a, b]),
        lambda a, b: a == b,
        lambda a, b: a - b,
        lambda a, b: np.allclose(a, b),
    ],
)
def test_mixing_spaces_raises(combine: object) -> None:
    a = SpaceVectors(np.ones((2, 3), np.float32), "v0-" + "a" * 16, 0)
    b = SpaceVectors(np.ones((2, 3), np.float32), "v0-" + "b" * 16, 0)
    with pytest.raises(SpaceMismatchError, match="different embedding spaces"):
        combine(a, b)  # type: ignore[operator]
    combine(a, np.ones((2, 3), np.float32))  # an untagged array is not a space of its own


def test_fingerprint_changes_with_a_publish_and_matches_the_run(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", dims=(8, 12, 16), upto=1, random_embeddings=True)
    root = tmp_path / "store"
    publish(run, root, min_probes=8, check_model=False)
    before = EmbeddingStore(root)
    assert before.space(0) == str(run_space(run, 0, 1))
    full = write_fake_run(tmp_path / "run2", dims=(8, 12, 16), random_embeddings=True)
    for k in (0, 1):  # the same history: continue the published lineage
        shutil.rmtree(full / f"version_{k}")
        shutil.copytree(run / f"version_{k}", full / f"version_{k}")
    publish(full, root, min_probes=8, check_model=False)
    after = EmbeddingStore(root)
    assert after.space(0) != before.space(0)  # a new latest model and a new link
    assert after.space(0) == str(run_space(full, 0, 2))
    fp = manifest_space(after.manifest, 0)
    assert fp.latest == 2 and len(fp.links) == 2
    with pytest.raises(SpaceMismatchError):
        np.concatenate([before.get(["0"], version=0), after.get(["0"], version=0)])


def test_parse_space_rejects_garbage() -> None:
    assert parse_space("v3-0123456789abcdef") == (3, "0123456789abcdef")
    with pytest.raises(ValueError, match="not an embedding-space fingerprint"):
        parse_space("v3-xyz")
