"""A compiled id -> row table (numba) for lookups of many ids at once.

A dict lookup of a random id in a large store costs several cache misses that run one after
another (the slot, the entry, the key's text, the row's int object): about 0.7 us per id in a
loaded server, most of a 100-id request's lookup. Here one compiled call answers every id of a
request, in three passes: the first hashes each id, the second loads each id's slot in a loop
with nothing else in it, so that the misses of different ids overlap, and the third compares.
A slot holds the id's hash, its row and length, and its first 16 bytes, so an id of up to 16
bytes costs one miss; longer ids compare the rest with a packed copy of every id. The table
lies on huge pages where Linux offers them (one TLB entry per 2 MiB of slots).

Optional: without numba (``pip install numba``, part of the ``serve`` extra) :meth:`IdTable.build`
returns None and the store looks ids up in its dict. Ids are compared as UTF-8 bytes (lone
surrogates kept), so an id matches exactly when the dict would match it.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Sequence

import numpy as np

__all__ = ["IdTable", "available"]

_LEN_SHIFT = 40  # a slot's second word: the id's length in bytes above bit 40, its row below
_ROW_MASK = (1 << _LEN_SHIFT) - 1
_INLINE = 16  # id bytes held in the slot itself


def _hash(buf: np.ndarray, start: int, end: int) -> np.uint64:
    """FNV-1a of ``buf[start:end]``, then splitmix64's finalizer: every byte reaches the low
    bits that pick the slot."""
    h = np.uint64(14695981039346656037)
    for i in range(start, end):
        h = (h ^ np.uint64(buf[i])) * np.uint64(1099511628211)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _word(buf: np.ndarray, start: int, end: int, w: int) -> np.int64:
    """Bytes ``[start + 8w, start + 8w + 8)`` of an id ending at ``end``, zero past its end."""
    x = np.int64(0)
    a = start + 8 * w
    for i in range(8):
        if a + i < end:
            x |= np.int64(buf[a + i]) << np.int64(8 * i)
    return x


def _build(blob: np.ndarray, offsets: np.ndarray, table: np.ndarray) -> None:
    """Fill the open-addressing table (linear probing) of ids ``blob[offsets[r]:offsets[r + 1]]``.

    Shapes:
        table: ``[2^b, 4]`` int64, zeros: hash, length << 40 | row (-1: empty), first 16
            bytes.
    """
    mask = len(table) - 1
    table[:, 1] = -1
    for row in range(len(offsets) - 1):
        a, b = offsets[row], offsets[row + 1]
        h = _hash(blob, a, b)
        slot = np.int64(h & np.uint64(mask))
        while table[slot, 1] >= 0:
            slot = (slot + 1) & mask
        table[slot, 0] = np.int64(h)
        table[slot, 1] = ((b - a) << _LEN_SHIFT) | row
        table[slot, 2] = _word(blob, a, b, 0)
        table[slot, 3] = _word(blob, a, b, 1)


def _lookup(
    buf: np.ndarray,
    table: np.ndarray,
    blob: np.ndarray,
    offsets: np.ndarray,
    out: np.ndarray,
) -> bool:
    """Rows of the NUL-separated ids in ``buf`` into ``out[:-1]``; False at the first unknown id.
    (``out[-1]`` receives a value read in the second pass, so that its loads are not optimized
    away.)"""
    n = len(out) - 1
    mask = len(table) - 1
    starts = np.empty(n + 1, np.int64)
    hashes = np.empty(n, np.int64)
    slots = np.empty(n, np.int64)
    pos = 0
    for k in range(n):  # pass 1: hash each id (its own bytes only)
        starts[k] = pos
        end = pos
        while end < len(buf) and buf[end] != 0:
            end += 1
        h = _hash(buf, pos, end)
        hashes[k] = np.int64(h)
        slots[k] = np.int64(h & np.uint64(mask))
        pos = end + 1
    starts[n] = pos
    # Pass 2: load every id's slot in a loop with no other branch. The table is rarely in cache
    # in a loaded server; loads that no mispredicted branch separates run together, so the
    # misses of all the ids overlap (in pass 1 each id's end-of-id branch cut them short).
    touched = np.int64(0)
    for k in range(n):
        touched ^= table[slots[k], 0]
    for k in range(n):  # pass 3: probe from the slot, compare hash, length and bytes
        a, b = starts[k], starts[k + 1] - 1
        h = hashes[k]
        slot = slots[k]
        w0, w1 = _word(buf, a, b, 0), _word(buf, a, b, 1)
        found = -1
        while table[slot, 1] >= 0:
            meta = table[slot, 1]
            same_start = table[slot, 2] == w0 and table[slot, 3] == w1
            if table[slot, 0] == h and (meta >> _LEN_SHIFT) == b - a and same_start:
                row = meta & _ROW_MASK
                same = True
                if b - a > _INLINE:  # only a long id reads its stored tail (another miss)
                    c = offsets[row]
                    for i in range(_INLINE, b - a):
                        if blob[c + i] != buf[a + i]:
                            same = False
                            break
                if same:
                    found = row
                    break
            slot = (slot + 1) & mask
        if found < 0:
            return False
        out[k] = found
    out[n] = touched
    return True


def _huge_zeros(shape: tuple[int, int]) -> np.ndarray:
    """An int64 array of zeros on huge pages where Linux offers them (else NumPy's own memory).

    A lookup touches a random slot per id: on 4 KiB pages each is also a TLB miss (in a
    scratch micro-benchmark with cold caches, 100 ids took 21 us on 4 KiB pages, 16.5 on 2 MiB).
    Private anonymous memory, advised before it is touched, so the kernel backs it with 2 MiB
    pages at the first write.
    """
    size = 8 * shape[0] * shape[1]
    huge = 2 << 20
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if advise is None or size < huge or not hasattr(mmap, "MAP_PRIVATE"):
        return np.zeros(shape, np.int64)
    area = mmap.mmap(-1, size + huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        area.madvise(advise)
    except OSError:  # no transparent huge pages here: plain pages, as NumPy's
        pass
    raw = np.frombuffer(area, np.uint8)  # holds the map for as long as the table lives
    skip = -raw.ctypes.data % huge  # start on a 2 MiB boundary
    return raw[skip : skip + size].view(np.int64).reshape(shape)


_compiled: tuple | None = None
_compiling = threading.Lock()  # the service's watcher thread and a library caller may race


def _kernels() -> tuple | None:
    """The compiled ``(_build, _lookup)``, or None without numba (compiled once per process;
    numba's cache keeps the machine code between processes)."""
    global _compiled, _hash, _word
    with _compiling:
        if _compiled is None:
            try:
                from numba import njit
            except ImportError:
                return None
            # The helpers first: the kernels call them by their global names.
            _hash = njit(cache=True, nogil=True, inline="always")(_hash)
            _word = njit(cache=True, nogil=True, inline="always")(_word)
            kernel = njit(cache=True, nogil=True)
            _compiled = (kernel(_build), kernel(_lookup))
    return _compiled


def available() -> bool:
    """Whether tables can be built (numba is installed)."""
    return _kernels() is not None


def _utf8(ids: Sequence[str]) -> list[bytes]:
    return [i.encode("utf-8", "surrogatepass") for i in ids]


class IdTable:
    """Rows of many string ids at once; build with :meth:`build`.

    Attributes:
        num_ids: Ids held (row ``r`` is the ``r``-th id given to :meth:`build`).
    """

    def __init__(self, blob: np.ndarray, offsets: np.ndarray, table: np.ndarray) -> None:
        self._blob, self._offsets, self._table = blob, offsets, table
        self.num_ids = len(offsets) - 1

    @classmethod
    def build(cls, ids: Sequence[str]) -> IdTable | None:
        """The table of ``ids`` (distinct strings), or None without numba."""
        kernels = _kernels()
        if kernels is None:
            return None
        build, lookup = kernels
        encoded = _utf8(ids)
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        blob = np.frombuffer(b"".join(encoded), np.uint8) if encoded else np.zeros(0, np.uint8)
        size = 1 << max(1, (2 * len(encoded) - 1).bit_length())  # a power of 2, at most half full
        slots = _huge_zeros((size, 4))
        build(blob, offsets, slots)
        table = cls(blob, offsets, slots)
        table.rows(["bcemb: warm up"])  # compile (or load) the lookup now, not in a request
        return table

    def rows(self, ids: list[str]) -> np.ndarray | None:
        """Row of each id, or None when some id is unknown, not a ``str`` or holds a NUL
        (the caller's dict then answers, and names the unknown ids)."""
        try:
            joined = "\x00".join(ids).encode("utf-8", "surrogatepass")
        except TypeError:
            return None
        if joined.count(0) != len(ids) - 1:  # an id holds a NUL: the separators are ambiguous
            return None
        out = np.empty(len(ids) + 1, np.intp)
        _, lookup = _compiled  # type: ignore[misc]
        buf = np.frombuffer(joined, np.uint8)
        if not lookup(buf, self._table, self._blob, self._offsets, out):
            return None
        return out[:-1]
