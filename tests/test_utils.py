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


@pytest.mark.parametrize("flag", [True, False])
def test_deterministic_sets_and_restores_and_skips_the_nan_fill(flag: bool) -> None:
    import torch

    from bcemb.utils import deterministic

    before = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    with deterministic(flag):
        assert torch.are_deterministic_algorithms_enabled() is flag
        # New tensors are not filled with NaN first (a pass per allocation, no effect on results).
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    after = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    assert after == before
