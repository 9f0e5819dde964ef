"""Store errors name what is wrong in a bounded message."""

from __future__ import annotations

from bcemb.store.errors import UnknownIdsError


def test_unknown_ids_message_is_bounded_but_keeps_the_ids() -> None:
    huge = "x" * 4_000_000
    err = UnknownIdsError("user", [huge, "b", "c", "d", "e", "f"], 7)
    assert len(str(err)) < 600
    assert "4,000,000 characters" in str(err) and "and 1 more" in str(err)
    assert err.missing[0] == huge and err.total == 7
