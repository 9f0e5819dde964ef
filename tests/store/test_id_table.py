"""The compiled id table answers exactly what the store's dict answers, and defers the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

from bcemb.store import id_table  # noqa: E402
from bcemb.store.id_table import IdTable  # noqa: E402

# Short, inline-length, long and non-ASCII ids, a lone surrogate, ids that are prefixes of others.
_ODD = ["", "a", "ab", "x" * 16, "x" * 17, "x" * 40, "é", "日本語-id", "a\udc80b", "12", "123"]


def _ids(n: int = 2000) -> list[str]:
    return [f"u{i}" for i in np.random.default_rng(0).permutation(n)] + _ODD


def test_rows_equal_the_dict_for_known_ids() -> None:
    ids = _ids()
    table = IdTable.build(ids)
    assert table is not None and table.num_ids == len(ids)
    truth = {k: r for r, k in enumerate(ids)}
    rng = np.random.default_rng(1)
    for size in (1, 2, 8, 100, 3000):
        ask = [ids[i] for i in rng.integers(0, len(ids), size)]
        np.testing.assert_array_equal(table.rows(ask), [truth[k] for k in ask])
    np.testing.assert_array_equal(table.rows(_ODD), [truth[k] for k in _ODD])


@pytest.mark.parametrize(
    "bad",
    [
        "nope",
        "x" * 15,  # a prefix of a stored 16-byte id
        "x" * 41,  # longer than every stored id
        "x" * 16 + "y",  # the same inline bytes as a stored id, another tail
        "u1\x00u2",  # a NUL would be taken for a separator
        "a\udc80c",
    ],
)
def test_an_unknown_or_ambiguous_id_is_deferred_to_the_caller(bad: str) -> None:
    table = IdTable.build(_ids())
    assert table is not None
    assert table.rows(["u1", bad, "u2"]) is None


def test_non_string_ids_are_deferred() -> None:
    table = IdTable.build(_ids())
    assert table is not None
    assert table.rows(["u1", 2]) is None  # type: ignore[list-item]
    assert table.rows([]) is None


def test_colliding_slots_are_probed() -> None:
    # A table of 4 ids in 8 slots: every id shares its first probe with another sooner or later.
    ids = ["a", "b", "c", "d"]
    table = IdTable.build(ids)
    assert table is not None
    np.testing.assert_array_equal(table.rows(["d", "c", "b", "a", "a"]), [3, 2, 1, 0, 0])


def test_without_numba_nothing_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(id_table, "_kernels", lambda: None)
    assert IdTable.build(["a"]) is None
    assert not id_table.available()


def test_store_rows_use_the_table_and_still_name_unknown_ids(tmp_path: Path) -> None:
    from bcemb.store import EmbeddingStore, UnknownIdsError, publish
    from bcemb.store._testing import plain_graph, write_fake_run

    run = write_fake_run(tmp_path / "run", plain_graph(300, 100), dims=[8, 12])
    publish(run, tmp_path / "store")
    store = EmbeddingStore(tmp_path / "store")
    ids = [str(i) for i in store.ids("user").tolist()]
    plain = store.rows(ids[:50])
    assert store.index_ids()
    np.testing.assert_array_equal(store.rows(ids[:50]), plain)
    np.testing.assert_array_equal(store.rows(ids[::-1]), np.arange(len(ids))[::-1])
    with pytest.raises(UnknownIdsError) as err:
        store.rows([*ids[:20], "nobody"])
    assert err.value.missing == ["nobody"]
