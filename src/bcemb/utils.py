"""Small shared helpers: progress bars, device choice, atomic writes, environment info."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

T = TypeVar("T")

__all__ = [
    "atomic_write_bytes",
    "current_umask",
    "deterministic",
    "environment",
    "fsync_dir",
    "fsync_file",
    "new_file_mode",
    "progress",
    "read_json",
    "resolve_device",
    "write_json",
]

_UMASK_LOCK = threading.Lock()


def progress(iterable: Iterable[T], *, desc: str = "", show: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar; ``show=None`` means on when the ``bcemb`` logger is at INFO or lower."""
    if show is None:
        show = logging.getLogger("bcemb").getEffectiveLevel() <= logging.INFO
    return tqdm(iterable, desc=desc, disable=not show, dynamic_ncols=True, **kwargs)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None -> CUDA when present, else CPU; an unavailable CUDA device is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available")
    return dev


@contextmanager
def deterministic(flag: bool) -> Iterator[None]:
    """Deterministic kernels on (``flag``) or off within the block; the previous settings after.

    PyTorch then also fills every newly allocated tensor with NaN by default (a check for reads
    of uninitialized memory, ``torch.utils.deterministic.fill_uninitialized_memory``): a pass
    over each activation and gradient, ~5 % of a training step on a Musical-sized graph, that
    changes no result, since every kernel writes its output. It is off here.
    """
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    was_filling = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(flag, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = was_filling


def fsync_file(path: str | Path) -> None:
    """Flush a complete file to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make renames and new entries in a directory durable (POSIX; a no-op elsewhere)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux ``/proc``).

    ``os.umask`` can only be read by setting it; doing that briefly would let another thread
    create files with the wrong mode, so it is the fallback, under a lock.
    """
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the umask (``0o644`` under 022)."""
    return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush, fsync, then rename.

    The file gets the mode a plain ``open()`` would give it (``0o666`` less the umask):
    ``mkstemp`` creates it 0600, which would lock out the other users a store, a report or
    a figure is shared with.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def read_json(path: str | Path) -> Any:
    """Read JSON, naming the file in any error."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"missing file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt JSON in {path}: {err}") from err


def environment() -> dict[str, Any]:
    """Library versions, platform and git hash, recorded next to every result."""
    import numpy
    import torch_geometric

    from bcemb.version import __version__

    try:
        git = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {
        "bcemb": __version__,
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": git,
        "cuda": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
    }
