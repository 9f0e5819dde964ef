"""Which space does a file of vectors live in? ``bcemb store doctor FILE.parquet --store S``.

A file of vectors with ids (``kind``, ``id``, ``embedding``: the store's export format) is
compared, row by row, with every hypothesis the store can compute for the same ids:

- ``v<j>``: the store's ver-j view (every version ``j`` of the file's dimension);
- ``v<i>[:D]``: the first ``D`` coordinates of a longer version ``i`` — not a compatible
  space at all, but the commonest mistake (what Non-BC does), so it is named when it fits.

Each row goes to the hypothesis with the smallest relative residual
``||x - h(x)|| / ||h(x)||``. A residual near 0 is an exact match; a moderate one is the same
version served from an earlier publish (the chain changed since). The file is *mixed* when
several hypotheses each explain a share of its rows. The schema metadata
(``bcemb.space``, written by exports) is reported and checked too, but the verdict does not
rely on it: it works on files whose metadata is gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from bcemb.store import io as sio
from bcemb.store.errors import StoreError, UnknownIdsError

logger = logging.getLogger(__name__)

__all__ = ["EXACT", "DoctorReport", "Hypothesis", "diagnose"]

#: Relative residual below which a row is in a space exactly (float32 round-off is ~1e-7).
EXACT = 1e-4
#: Relative residual above which no hypothesis explains a row.
UNEXPLAINED = 0.75
#: Share of rows a second hypothesis must explain for a file to count as mixed.
MIXED_SHARE = 0.01


@dataclass(frozen=True)
class Hypothesis:
    """How well one candidate space explains the file.

    Attributes:
        name: ``v<j>`` or ``v<i>[:D]``.
        version: ``j`` (or ``i``).
        compatible: False for truncations of a longer version.
        space: The store's fingerprint of the space (compatible ones).
        rows: Rows it explains best (and below :data:`UNEXPLAINED`).
        exact_rows: Of those, rows matched exactly (residual below :data:`EXACT`).
        median_residual: Median relative residual over the rows it explains (NaN if none).
    """

    name: str
    version: int
    compatible: bool
    space: str | None
    rows: int
    exact_rows: int
    median_residual: float


@dataclass(frozen=True)
class DoctorReport:
    """The diagnosis of one file.

    Attributes:
        path: The file.
        rows: Rows read.
        dim: Its dimension.
        unknown: Rows whose ids the store does not know (not judged).
        unexplained: Rows no hypothesis explains.
        hypotheses: Every hypothesis, best first.
        metadata: The file's ``bcemb.*`` schema metadata.
        verdict: One of ``exact``, ``stale``, ``truncated``, ``mixed``, ``unknown``.
        space: The space identified (a fingerprint) for ``exact``; None otherwise.
        version: The version identified, if any.
        messages: Plain-language findings.
    """

    path: str
    rows: int
    dim: int
    unknown: int
    unexplained: int
    hypotheses: tuple[Hypothesis, ...]
    metadata: dict[str, str]
    verdict: str
    space: str | None
    version: int | None
    messages: tuple[str, ...] = field(default_factory=tuple)

    @property
    def mixed(self) -> bool:
        """The file holds vectors of more than one space."""
        return self.verdict == "mixed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        from dataclasses import asdict

        d = asdict(self)
        d["mixed"] = self.mixed
        return d


def _read(path: Path) -> tuple[Any, dict[str, str]]:
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise StoreError(f"no file at {path}") from None
    except Exception as err:  # pyarrow raises several types for unreadable files
        raise StoreError(f"{path}: not a readable Parquet file or folder: {err}") from err
    missing = {"id", "embedding"} - set(table.column_names)
    if missing:
        raise StoreError(f"{path}: needs columns id and embedding (and kind), missing {sorted(missing)}")
    meta = {
        k.decode(): v.decode()
        for k, v in (table.schema.metadata or {}).items()
        if k.decode().startswith("bcemb.")
    }
    return table, meta


def diagnose(path: str | Path, store: Any) -> DoctorReport:
    """Tell which of the store's spaces the vectors of ``path`` live in.

    Args:
        path: A Parquet file (or a folder of parts) with ``kind`` (default ``user``), ``id``
            and ``embedding`` columns.
        store: An :class:`~bcemb.store.EmbeddingStore` or its directory.

    Returns:
        The diagnosis.
    """
    from bcemb.store.store import EmbeddingStore

    if not isinstance(store, EmbeddingStore):
        store = EmbeddingStore(store, verify=False)
    path = Path(path)
    table, meta = _read(path)
    x = sio.table_vectors(table.select(["embedding"]), path).astype(np.float64)
    n, dim = x.shape
    kinds = (
        np.asarray(table.column("kind").to_pylist(), dtype=object)
        if "kind" in table.column_names
        else np.full(n, "user", dtype=object)
    )
    ids = np.asarray([str(v) for v in table.column("id").to_pylist()], dtype=object)
    known = np.ones(n, dtype=bool)
    for kind in ("user", "item"):
        mask = kinds == kind
        if mask.any():
            try:
                store.rows(list(ids[mask]), kind=kind)
            except UnknownIdsError as err:
                gone = set(err.missing)
                known[np.flatnonzero(mask)[[i in gone for i in ids[mask]]]] = False
    bad_kind = ~np.isin(kinds, ["user", "item"])
    known &= ~bad_kind

    # Hypotheses: every version of this dimension, and truncations of longer versions.
    hyps: list[tuple[str, int, bool]] = []
    for v in store.versions:
        d = store.dim(v)
        if d == dim:
            hyps.append((f"v{v}", v, True))
        elif d > dim:
            hyps.append((f"v{v}[:{dim}]", v, False))
    residual = np.full((len(hyps), n), np.inf)
    for h, (_, v, _) in enumerate(hyps):
        for kind in ("user", "item"):
            rows = np.flatnonzero(known & (kinds == kind))
            if not len(rows):
                continue
            view = np.asarray(store.get(list(ids[rows]), version=v, kind=kind), dtype=np.float64)[:, :dim]
            norm = np.maximum(np.linalg.norm(view, axis=1), 1e-12)
            residual[h, rows] = np.linalg.norm(x[rows] - view, axis=1) / norm

    results = []
    if hyps and known.any():
        best = residual.argmin(axis=0)
        best_val = residual.min(axis=0)
        explained = known & (best_val <= UNEXPLAINED)
        for h, (name, v, compatible) in enumerate(hyps):
            mine = explained & (best == h)
            results.append(
                Hypothesis(
                    name=name,
                    version=v,
                    compatible=compatible,
                    space=store.space(v) if compatible else None,
                    rows=int(mine.sum()),
                    exact_rows=int((mine & (best_val <= EXACT)).sum()),
                    median_residual=float(np.median(best_val[mine])) if mine.any() else float("nan"),
                )
            )
        unexplained = int((known & ~explained).sum())
    else:
        unexplained = int(known.sum())
    results.sort(key=lambda r: -r.rows)
    judged = int(known.sum())
    present = [r for r in results if r.rows > max(1, MIXED_SHARE * judged)]
    messages: list[str] = []
    verdict, space, version = "unknown", None, None
    if not known.any():
        messages.append("no row of the file has an id the store knows: nothing to compare with")
    elif len(present) > 1:
        verdict = "mixed"
        parts = ", ".join(f"{r.name} ({r.rows} rows)" for r in present)
        messages.append(f"the file MIXES spaces: {parts}; vectors of different spaces are not comparable")
    elif present:
        top = present[0]
        version = top.version
        if not top.compatible:
            verdict = "truncated"
            messages.append(
                f"the vectors are the first {dim} coordinates of version {top.version} "
                "(not a compatible space: fetch them from the store with version=<j> instead)"
            )
        elif top.exact_rows == top.rows:
            verdict, space = "exact", top.space
            messages.append(f"the vectors are in the store's current space of version {top.version} ({top.space})")
        else:
            verdict = "stale"
            messages.append(
                f"the vectors are version-{top.version} vectors of an earlier state of the store "
                f"(median relative residual {top.median_residual:.3g} against the current view); "
                "refetch them before comparing with newly served ones"
            )
    else:
        messages.append(f"no space of the store explains the vectors (dimension {dim})")
    if unexplained and verdict != "unknown":
        messages.append(f"{unexplained} row(s) fit no space of the store")
    if (~known).any():
        messages.append(f"{int((~known).sum())} row(s) have ids the store does not know (not judged)")
    tagged = meta.get("bcemb.space")
    if tagged:
        current = {store.space(v): v for v in store.versions}
        if tagged in current:
            note = f"the metadata names the store's current space of version {current[tagged]} ({tagged})"
            if space is not None and tagged != space:
                note += f", but the vectors are in {space}: the metadata is wrong"
            messages.append(note)
        else:
            messages.append(
                f"the metadata names space {tagged}, not a current space of the store (an earlier publish)"
            )
    else:
        messages.append("the file carries no bcemb.space metadata; judged from the vectors alone")
    return DoctorReport(
        path=str(path),
        rows=n,
        dim=dim,
        unknown=int((~known).sum()),
        unexplained=unexplained,
        hypotheses=tuple(results),
        metadata=meta,
        verdict=verdict,
        space=space,
        version=version,
        messages=tuple(messages),
    )
