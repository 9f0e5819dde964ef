"""Materialized views (EmbeddingStore.materialize): a gather instead of a product per request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bcemb.store import EmbeddingStore


@pytest.fixture()
def store(store_dir: Path) -> EmbeddingStore:
    return EmbeddingStore(store_dir)


def test_views_hold_the_chains_answer_for_every_node(store_dir: Path) -> None:
    plain, viewed = EmbeddingStore(store_dir), EmbeddingStore(store_dir)
    assert viewed.materialize() == [0, 1] and viewed.materialized == [0, 1]
    for kind in ("user", "item"):
        ids = list(plain.ids(kind))
        for version in (0, 1, 2):
            got, want = viewed.get(ids, version=version, kind=kind), plain.get(ids, version=version, kind=kind)
            assert got.shape == want.shape and got.space == want.space
            # Same products, possibly other BLAS blocking: equal to float32 rounding.
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_an_id_gets_the_same_bits_alone_or_in_a_batch(store: EmbeddingStore) -> None:
    store.materialize()
    ids = list(store.ids("user"))
    alone = np.stack([store.get([i], version=0)[0] for i in ids[:5]])
    np.testing.assert_array_equal(alone, store.get(ids, version=0)[:5])


def test_budget_stops_before_it_is_exceeded(store: EmbeddingStore) -> None:
    assert store.materialize(max_bytes=store.view_bytes(0) - 1) == []
    assert store.materialized == []
    assert store.materialize(max_bytes=store.view_bytes(0)) == [0]  # version 1 would not fit
    assert store.materialized == [0]
    assert store.materialize([1]) == [1] and store.materialized == [0, 1]


def test_materializing_is_idempotent_and_skips_the_latest(store: EmbeddingStore) -> None:
    assert store.materialize([2, 0]) == [2, 0]
    assert store.materialized == [0]  # the latest is served from the stored matrix itself
    assert store.materialize([0]) == [0]


def test_unknown_version_is_refused(store: EmbeddingStore) -> None:
    from bcemb.store import UnknownVersionError

    with pytest.raises(UnknownVersionError):
        store.materialize([7])


def test_get_rows_is_get_by_row_number(store: EmbeddingStore) -> None:
    ids = list(store.ids("item"))[3:9]
    rows = store.rows(ids, kind="item")
    for version in (0, 2):
        np.testing.assert_array_equal(
            store.get_rows(rows, version=version, kind="item"), store.get(ids, version=version, kind="item")
        )
