"""Shared helpers: atomic writes honour the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bcemb.utils import atomic_write_bytes, current_umask, write_json


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        atomic_write_bytes(tmp_path / "report.md", b"x")
        write_json(tmp_path / "figure.json", {"a": 1})
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(old)
    expected = 0o666 & ~mask
    for name in ("report.md", "figure.json", "plain"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _deterministic_settings() -> tuple[bool, bool, bool]:
    import torch

    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    )


@pytest.mark.parametrize("flag", [True, False])
@pytest.mark.parametrize("outer", [(False, False), (True, True), (True, False)])
def test_deterministic_sets_and_restores_and_skips_the_nan_fill(flag: bool, outer: tuple[bool, bool]) -> None:
    import torch

    from bcemb.utils import deterministic

    saved = _deterministic_settings()
    try:
        torch.use_deterministic_algorithms(outer[0], warn_only=outer[1])
        before = _deterministic_settings()
        with deterministic(flag):
            assert torch.are_deterministic_algorithms_enabled() is flag
            # New tensors are not filled with NaN first (a pass per allocation, no effect on results).
            assert torch.utils.deterministic.fill_uninitialized_memory is False
        assert _deterministic_settings() == before
        with pytest.raises(RuntimeError, match="inside"), deterministic(flag):
            raise RuntimeError("inside")
        assert _deterministic_settings() == before  # restored after an error as well
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.utils.deterministic.fill_uninitialized_memory = saved[2]
