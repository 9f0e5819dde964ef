"""Which older versions the service keeps materialized in memory (``bcemb serve --materialize``).

A ver-j answer is ``z_k[rows] @ M_j^T``; for 100 ids that product costs more than everything
else the service does for the request. Keeping ``z_k @ M_j^T`` for every stored node in memory
turns it into a row gather, at ``4 * D_j`` bytes per node and version. The store on disk still
holds only the latest embeddings and the chain; the views are a cache of the snapshot served.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bcemb.store import EmbeddingStore

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_VIEW_BUDGET_MB", "ViewPolicy"]

#: Memory the default policy (``auto``) may spend on views.
DEFAULT_VIEW_BUDGET_MB = 1024.0


@dataclass(frozen=True)
class ViewPolicy:
    """Versions to materialize and the memory they may take.

    Attributes:
        versions: Versions to keep (None: every version but the latest, oldest first).
        max_bytes: Budget (None: unlimited); versions past it are computed per request.
        enabled: False for ``none``.
    """

    versions: tuple[int, ...] | None = None
    max_bytes: int | None = int(DEFAULT_VIEW_BUDGET_MB * 2**20)
    enabled: bool = True

    @classmethod
    def parse(cls, spec: str, budget_mb: float = DEFAULT_VIEW_BUDGET_MB) -> ViewPolicy:
        """``auto`` (every older version within ``budget_mb``), ``all``, ``none`` or ``0,2``.

        Raises:
            ValueError: Naming the option and the bad value.
        """
        text = spec.strip().lower()
        if budget_mb < 0:
            raise ValueError(f"--materialize-mb must be >= 0, got {budget_mb}")
        budget = int(budget_mb * 2**20)
        if text == "none":
            return cls(enabled=False)
        if text == "auto":
            return cls(max_bytes=budget)
        if text == "all":
            return cls(max_bytes=None)
        try:
            versions = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise ValueError(
                f"--materialize must be auto, all, none or versions like 0,1; got {spec!r}"
            ) from None
        if any(v < 0 for v in versions):
            raise ValueError(f"--materialize versions must be >= 0, got {spec!r}")
        return cls(versions=versions, max_bytes=None)

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
        return done
