"""Hot reload: a background thread opens each newly published store state and swaps it in.

Requests only read :attr:`StoreWatcher.store` (one attribute read, atomic in Python), so no
request pays for a reload: the old snapshot is served until the new one is open and
verified. A state that cannot be opened (unreadable files, a bad checksum) leaves the old
snapshot in service and is reported by :attr:`StoreWatcher.error` (``/health`` says
"degraded"); the watcher retries with a growing delay.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from bcemb.serve.errors import clip
from bcemb.serve.views import ViewPolicy, free_unused, retire_texts
from bcemb.store import EmbeddingStore

logger = logging.getLogger(__name__)

__all__ = ["StoreWatcher"]

_MAX_RETRY_DELAY = 30.0


def _index_ids(store: EmbeddingStore) -> None:
    """Build the snapshot's compiled id tables; without them (no numba, no memory) its dicts answer."""
    started = time.perf_counter()
    try:
        built = store.index_ids()
    except MemoryError:
        name = store.manifest.name
        logger.warning("not enough memory for the id tables of %s; ids are looked up one by one", name)
        return
    if built:
        logger.info("built the id tables of %s in %.2f s", store.manifest.name, time.perf_counter() - started)
    else:
        logger.info("numba is not installed: ids are looked up one by one (pip install numba)")


class StoreWatcher:
    """The store snapshot being served, and the thread that swaps in new ones.

    Args:
        root: The store directory (opened now, so that errors surface early).
        verify: Check checksums when opening each state.
        interval: Seconds between looks at the store pointer; negative: never reload.
        views: Older versions to keep materialized (computed at opening; after a reload,
            once the new snapshot is already served, so that no request waits for them).

    Each snapshot's compiled id tables (:meth:`EmbeddingStore.index_ids`) are built the same
    way: at opening, and after a reload while the new snapshot already answers from its dicts.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        verify: bool = True,
        interval: float = 0.25,
        views: ViewPolicy | None = None,
    ) -> None:
        self.store = EmbeddingStore(root, verify=verify)
        self.views = views if views is not None else ViewPolicy(enabled=False)
        self.views.apply(self.store)
        _index_ids(self.store)
        self.interval = interval
        self.error: str | None = None
        self.failed_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Row texts of swapped-out snapshots, freed a block at a time once unused: freeing
        # 150,000 of them at once held the GIL 44 ms, which a request would wait for.
        self._retired: list[np.ndarray] = []

    def poll(self) -> bool:
        """Look once for a new store state and swap it in. Returns whether it swapped."""
        if self._retired:
            self._retired = free_unused(self._retired)
        try:
            if not self.store.is_stale():
                return False
            fresh = self.store.reload()
        except Exception as err:  # noqa: BLE001 - any failure keeps the old snapshot in service
            if self.failed_since is None:
                self.failed_since = time.time()
            self.error = clip(f"{type(err).__name__}: {err}", 500)
            logger.error(
                "cannot open the new state of %s (still serving %s): %s",
                self.store.root,
                self.store.manifest.name,
                self.error,
            )
            return False
        old = self.store
        self.store, self.error, self.failed_since = fresh, None, None
        self._retired += retire_texts(old)
        del old
        logger.info("now serving %s (latest version %d)", fresh.manifest.name, fresh.latest)
        try:  # the new snapshot answers meanwhile with per-request products
            self.views.apply(fresh)
        except MemoryError:
            logger.warning("not enough memory for the views of %s; computing per request", fresh.manifest.name)
        _index_ids(fresh)
        return True

    def start(self) -> None:
        """Start the background thread (no-op when reloading is off or it runs)."""
        if self.interval < 0 or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bcemb-store-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        delay = self.interval
        while not self._stop.wait(delay):
            ok = self.poll() or self.error is None
            # After a failure, retry less and less often (opening may verify large files).
            delay = self.interval if ok else min(max(delay * 2, self.interval), _MAX_RETRY_DELAY)
