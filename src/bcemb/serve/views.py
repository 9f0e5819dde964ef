"""Which older versions the service keeps materialized in memory (``bcemb serve --materialize``).

A ver-j answer is ``z_k[rows] @ M_j^T``; for 100 ids that product costs more than everything
else the service does for the request. Keeping ``z_k @ M_j^T`` for every stored node in memory
turns it into a row gather, at ``4 * D_j`` bytes per node and version. The store on disk still
holds only the latest embeddings and the chain; the views are a cache of the snapshot served.

A JSON answer then still formats every float (about 28 ns each: 0.7 ms for 100 ids of 256
dims, several times the rest of the request). So each row of a materialized version (and of
the latest) is also kept as its JSON text, one ``bytes`` per row, within a second budget
(``--json-cache-mb``): a JSON answer of those rows is then one join of their texts. It holds
the same bytes as the answer formatted anew.
"""

from __future__ import annotations

import logging
import sys
import time
import weakref
from dataclasses import dataclass

import numpy as np

from bcemb.serve.encoding import json_row_pieces, json_row_texts
from bcemb.store import EmbeddingStore
from bcemb.store import io as sio

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_JSON_BUDGET_MB",
    "DEFAULT_VIEW_BUDGET_MB",
    "ViewPolicy",
    "free_unused",
    "json_texts",
    "retire_texts",
]

#: Memory the default policy (``auto``) may spend on views.
DEFAULT_VIEW_BUDGET_MB = 1024.0
#: Memory the rows' JSON texts may take (about 2.8 times their float32 views).
DEFAULT_JSON_BUDGET_MB = 1024.0

# Per served snapshot: (kind, version) -> its rows' JSON texts (json_row_pieces). Weak keys:
# a snapshot swapped out by a reload takes its texts with it.
_TEXTS: weakref.WeakKeyDictionary[EmbeddingStore, dict[tuple[str, int], np.ndarray]] = (
    weakref.WeakKeyDictionary()
)
# Rows formatted per orjson call: a call holds the GIL throughout (about 8 ms for 1,024 rows of
# 256 floats), and the texts of a new snapshot are made while it serves, so a request waits at
# most that long (16,384 rows held it 145 ms).
_TEXT_BLOCK_ROWS = 1024


def json_texts(store: EmbeddingStore, kind: str, version: int) -> np.ndarray | None:
    """The JSON texts of every ``kind`` row of ``store`` at ``version`` as
    :func:`~bcemb.serve.encoding.json_row_pieces`, or None when they are not kept."""
    texts = _TEXTS.get(store)
    return None if texts is None else texts.get((kind, version))


def retire_texts(store: EmbeddingStore) -> list[np.ndarray]:
    """Take the kept texts of a snapshot that a reload swapped out, to be freed with
    :func:`free_unused` (a request still on it formats its JSON anew, as without texts)."""
    texts = _TEXTS.pop(store, None)
    return list(texts.values()) if texts else []


# Rows of texts freed per step: one step holds the GIL about 1 ms (150,000 rows at once: 44 ms).
_FREE_BLOCK_ROWS = 4096


def free_unused(retired: list[np.ndarray]) -> list[np.ndarray]:
    """Free the retired texts nothing else holds any more, a block of rows at a time, letting
    other threads run between blocks; returns those still held (by a request, or a plan of the
    old snapshot)."""
    held = []
    for pieces in retired:
        # References: the list, this loop's name, getrefcount's argument.
        if sys.getrefcount(pieces) > 3:
            held.append(pieces)
            continue
        for start in range(0, len(pieces), _FREE_BLOCK_ROWS):
            pieces[start : start + _FREE_BLOCK_ROWS] = None
            time.sleep(0)  # let the event loop in
    return held


def _pieces_bytes(pieces: np.ndarray) -> int:
    """Memory the row texts take: their bytes, a ``bytes`` object's header each, and the array."""
    return sum(map(len, pieces)) + pieces.size * (_PIECE_OVERHEAD + pieces.itemsize)


_PIECE_OVERHEAD = sys.getsizeof(b"")


def _encode_version(
    store: EmbeddingStore, version: int, budget: int
) -> tuple[dict[str, np.ndarray], int] | None:
    """Every row's JSON text of ``version`` and their size; None past ``budget`` or when a row
    is not finite (those answers go the checked way and fail with a clear error).

    Made and counted a block of rows at a time: no step holds the GIL for long (the service
    answers meanwhile), and the texts are never held twice."""
    out: dict[str, np.ndarray] = {}
    used = 0
    for kind in sio.KINDS:
        n = store.num_nodes(kind)
        pieces = np.empty(n, dtype=object)
        for start in range(0, n, _TEXT_BLOCK_ROWS):
            rows = np.arange(start, min(n, start + _TEXT_BLOCK_ROWS))
            block = np.asarray(store.get_rows(rows, version=version, kind=kind))
            if not np.isfinite(block).all():
                return None
            part = json_row_pieces(json_row_texts(block))
            used += _pieces_bytes(part)
            if used > budget:
                return None
            pieces[start : start + len(part)] = part
        out[kind] = pieces
    return out, used


@dataclass(frozen=True)
class ViewPolicy:
    """Versions to materialize and the memory they may take.

    Attributes:
        versions: Versions to keep (None: every version but the latest, oldest first).
        max_bytes: Budget (None: unlimited); versions past it are computed per request.
        enabled: False for ``none``.
        json_bytes: Budget of the rows' JSON texts (materialized versions oldest first, then
            the latest); 0: none kept.
    """

    versions: tuple[int, ...] | None = None
    max_bytes: int | None = int(DEFAULT_VIEW_BUDGET_MB * 2**20)
    enabled: bool = True
    json_bytes: int = int(DEFAULT_JSON_BUDGET_MB * 2**20)

    @classmethod
    def parse(
        cls,
        spec: str,
        budget_mb: float = DEFAULT_VIEW_BUDGET_MB,
        json_mb: float = DEFAULT_JSON_BUDGET_MB,
    ) -> ViewPolicy:
        """``auto`` (every older version within ``budget_mb``), ``all``, ``none`` or ``0,2``;
        ``json_mb`` for the rows' JSON texts.

        Raises:
            ValueError: Naming the option and the bad value.
        """
        text = spec.strip().lower()
        if budget_mb < 0:
            raise ValueError(f"--materialize-mb must be >= 0, got {budget_mb}")
        if json_mb < 0:
            raise ValueError(f"--json-cache-mb must be >= 0, got {json_mb}")
        budget = int(budget_mb * 2**20)
        json_bytes = int(json_mb * 2**20)
        if text == "none":
            return cls(enabled=False, json_bytes=0)
        if text == "auto":
            return cls(max_bytes=budget, json_bytes=json_bytes)
        if text == "all":
            return cls(max_bytes=None, json_bytes=json_bytes)
        try:
            versions = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise ValueError(
                f"--materialize must be auto, all, none or versions like 0,1; got {spec!r}"
            ) from None
        if any(v < 0 for v in versions):
            raise ValueError(f"--materialize versions must be >= 0, got {spec!r}")
        return cls(versions=versions, max_bytes=None, json_bytes=json_bytes)

    def apply(self, store: EmbeddingStore) -> list[int]:
        """Materialize the policy's versions of ``store`` (versions it lacks are skipped)."""
        if not self.enabled:
            return []
        versions = self.versions
        if versions is not None:
            versions = tuple(v for v in versions if v <= store.latest)
        started = time.perf_counter()
        done = store.materialize(versions, max_bytes=self.max_bytes)
        if done:
            size = sum(store.view_bytes(v) for v in done if v != store.latest) / 2**20
            logger.info(
                "materialized versions %s of %s (%.0f MB) in %.2f s",
                done, store.manifest.name, size, time.perf_counter() - started,
            )
        self._keep_json(store, [*[v for v in done if v != store.latest], store.latest])
        return done

    def _keep_json(self, store: EmbeddingStore, versions: list[int]) -> None:
        """Each row's JSON text of ``versions`` in order, while they fit ``json_bytes``."""
        started, used, kept = time.perf_counter(), 0, []
        for version in versions:
            if self.json_bytes <= used:
                break
            encoded = _encode_version(store, version, self.json_bytes - used)
            if encoded is None:
                break
            texts, size = encoded
            entry = _TEXTS.setdefault(store, {})
            for kind, rows in texts.items():
                entry[(kind, version)] = rows  # readers see a kind's texts whole or not at all
            used += size
            kept.append(version)
        if kept:
            logger.info(
                "kept the JSON text of versions %s of %s (%.0f MB) in %.2f s",
                kept, store.manifest.name, used / 2**20, time.perf_counter() - started,
            )
