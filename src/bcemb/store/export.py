"""Export every stored node's ver-j compatible embeddings as Parquet, in one process or with Dask.

The rows come from the latest version's memory-mapped ``user_emb.npy`` / ``item_emb.npy``
(checked against the manifest when the store was opened, or here when it was opened without
checks): each task maps a range of rows through the composed matrix ``W_{j+1} ... W_k`` and
writes one partition. Nothing runs per row in Python: the product's output buffer becomes the
Arrow ``fixed_size_list<float32>`` column without a copy, the table is encoded to Parquet in
memory (no compression, one row group), hashed, and written once. By default the ranges are
those of the stored partitions.

Both engines run the same task function with single-threaded BLAS (a multi-threaded product
may sum in another order and differ in the last bit) on the same row ranges, so their outputs
are identical byte for byte.

Output folder (written aside, then renamed into place)::

    PATH/part-00000.parquet ...   kind, id, embedding (fixed_size_list<float32>[D_j])
    PATH/_export.json             version, space, latest, source manifest, dim, rows, sha256 of each part

Every part carries ``bcemb.version``, ``bcemb.manifest`` and ``bcemb.space`` (the fingerprint of
the target space, :mod:`bcemb.store.fingerprint`) in its Parquet schema metadata.

With a Dask scheduler address, the workers must see the store and the output folder at the
same paths (a shared file system).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from bcemb.store import io as sio
from bcemb.store.errors import IntegrityError
from bcemb.store.manifest import read_manifest
from bcemb.store.store import EmbeddingStore, compose_matrix

if TYPE_CHECKING:
    from bcemb.transforms import TransformChain

logger = logging.getLogger(__name__)

__all__ = ["ENGINES", "ExportResult", "export_embeddings", "export_part"]

#: Export engines: one process (a thread per partition) or Dask (a local cluster or a scheduler).
ENGINES = ("single", "dask")
_META = "_export.json"


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        path: The output folder.
        version: ``j``.
        rows: Nodes written (users and items).
        parts: Parquet partitions written.
        dim: ``D_j``.
        seconds: Wall time.
        engine: ``"single"`` or ``"dask"``.
    """

    path: Path
    version: int
    rows: int
    parts: int
    dim: int
    seconds: float
    engine: str

    @property
    def rows_per_second(self) -> float:
        """Throughput."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class _Task:
    """One partition to export: plain values, cheap to ship to a Dask worker."""

    root: str
    manifest: str
    manifest_sha256: str
    version: int
    kind: str
    emb: str  # the latest version's ``<kind>_emb.npy``, relative to root
    ids: str  # the latest version's ``ids.parquet`` (users first, then items)
    offset: int  # row of this kind's first node in ``ids``
    start: int
    stop: int
    out: str
    space: str = ""  # the fingerprint of the target space (bcemb.store.fingerprint)


@functools.lru_cache(maxsize=16)
def _matrix(
    root: str, manifest: str, manifest_sha256: str, version: int
) -> np.ndarray | TransformChain | None:
    """The composed matrix of one manifest, from its verified transform files (cached per process)."""
    m = read_manifest(Path(root), manifest, manifest_sha256)
    if version == m.latest:
        return None
    from bcemb.models.io import load_transform
    from bcemb.transforms import TransformChain

    transforms = []
    for entry in m.versions[1:]:
        rel = entry.files["transform"]
        transforms.append(load_transform(sio.verify_file(Path(root), rel, m.files[rel].sha256)))
    if not all(t.linear for t in transforms[version:]):
        return TransformChain(transforms)  # non-linear links: applied step by step
    return compose_matrix(transforms, version)


@functools.lru_cache(maxsize=8)
def _rows(root: str, rel: str) -> np.ndarray:
    """A stored embedding matrix, memory-mapped (cached per process: one mapping per file)."""
    return sio.open_npy(Path(root) / rel)


@functools.lru_cache(maxsize=4)
def _ids(root: str, rel: str) -> pa.Array:
    """The ``id`` column of a stored ``ids.parquet`` (cached per process)."""
    return sio.read_table(Path(root) / rel, columns=["id"]).column("id").combine_chunks()


def _write_parquet(path: Path, table: pa.Table) -> str:
    """Encode ``table`` in memory, write it as a new file in one call, flush it; its sha256.

    Hashing the encoded buffer spares reading the file back. One row group and no
    compression: dense floats do not compress, and readers want large row groups.
    """
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="none",
        use_dictionary=["kind"],
        write_statistics=["kind", "id"],
        row_group_size=max(table.num_rows, 1),
    )
    buf = sink.getvalue()
    digest = hashlib.sha256(memoryview(buf)).hexdigest()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # honours the umask
    try:
        view = memoryview(buf)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest


def export_part(task: _Task) -> tuple[int, str]:
    """Map rows ``task.start:task.stop`` of one kind into version ``task.version`` and write them.

    The caller limits BLAS to one thread (see the module docstring).

    Returns:
        ``(rows, sha256 of the written file)``.
    """
    matrix = _matrix(task.root, task.manifest, task.manifest_sha256, task.version)
    z = _rows(task.root, task.emb)[task.start : task.stop]
    if matrix is None:
        out = np.ascontiguousarray(z, dtype=np.float32)
    elif isinstance(matrix, np.ndarray):
        out = z @ matrix.T  # a new C-contiguous float32 [n, D_j] array
    else:
        import torch

        z_t = torch.from_numpy(np.require(z, np.float32, ["C", "W"]))
        out = matrix.apply(z_t, task.version).numpy()
    n, dim = out.shape
    vectors = pa.FixedSizeListArray.from_arrays(  # shares out's buffer
        pa.array(out.reshape(-1)), type=sio.embedding_type(dim)
    )
    table = pa.Table.from_arrays(
        [
            pa.repeat(pa.scalar(task.kind, pa.string()), n),
            _ids(task.root, task.ids)[task.offset + task.start : task.offset + task.stop],
            vectors,
        ],
        schema=sio.embedding_schema(dim).with_metadata(
            {
                "bcemb.version": str(task.version),
                "bcemb.manifest": task.manifest,
                "bcemb.space": task.space,
            }
        ),
    )
    return n, _write_parquet(Path(task.out), table)


def _dask_part(task: _Task) -> tuple[int, str]:
    # Dask workers may run several threads; every export task wants one BLAS thread, so set it
    # for the whole worker process (idempotent) rather than toggling it per task.
    threadpool_limits(limits=1, user_api="blas")
    return export_part(task)


def _run_single(tasks: Sequence[_Task], workers: int | None) -> list[tuple[int, str]]:
    n = workers or min(8, os.cpu_count() or 1)
    # The product, Arrow's encoding, hashing and writing release the GIL: threads over
    # partitions use every core without copying data between processes.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(export_part, tasks))


def _run_dask(
    tasks: Sequence[_Task], scheduler: str | None, workers: int | None
) -> list[tuple[int, str]]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "the dask engine needs the 'dask' extra: pip install 'bcemb[dask]'"
        ) from err
    if scheduler:
        with Client(scheduler) as client:
            logger.info("exporting %d partitions on the Dask scheduler %s", len(tasks), scheduler)
            return client.gather(client.map(_dask_part, list(tasks), pure=False))
    n = workers or min(4, os.cpu_count() or 1)
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        logger.info("exporting %d partitions on a local Dask cluster of %d workers", len(tasks), n)
        return client.gather(client.map(_dask_part, list(tasks), pure=False))


def _ranges(store: EmbeddingStore, rows_per_part: int | None) -> list[tuple[str, int, int]]:
    """``(kind, start, stop)`` of every output partition: users first, then items.

    By default the stored partitions' ranges (read from their Parquet footers), so that an
    export lines up with the store; otherwise chunks of ``rows_per_part``.
    """
    counts = {k: store.num_nodes(k) for k in sio.KINDS}
    if rows_per_part is not None:
        return [
            (k, s, min(s + rows_per_part, counts[k]))
            for k in sio.KINDS
            for s in range(0, counts[k], rows_per_part)
        ]
    out: list[tuple[str, int, int]] = []
    kinds = iter(sio.KINDS)
    kind, start = next(kinds), 0
    for rel in store.entry(store.latest).parts:
        path = store.root / rel
        try:
            n = pq.read_metadata(path).num_rows
        except FileNotFoundError:
            raise IntegrityError(path, "missing file") from None
        except (OSError, pa.ArrowException) as err:
            raise IntegrityError(path, f"corrupt Parquet file: {err}") from err
        while start == counts[kind] and kind != sio.KINDS[-1]:
            kind, start = next(kinds), 0
        if n < 1 or start + n > counts[kind]:
            raise IntegrityError(path, f"{n} rows do not fit the {counts[kind]} stored {kind}s")
        out.append((kind, start, start + n))
        start += n
    covered = {k: sum(b - a for kk, a, b in out if kk == k) for k in sio.KINDS}
    if covered != counts:
        raise IntegrityError(store.root / store.entry(store.latest).parts[0],
                             f"the stored partitions hold {covered} rows, not {counts}")
    return out


def export_embeddings(
    store: EmbeddingStore | str | Path,
    path: str | Path,
    *,
    version: int | None = None,
    engine: str = "single",
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    rows_per_part: int | None = None,
) -> ExportResult:
    """Write ver-``version`` compatible embeddings of every stored node to a Parquet folder.

    Args:
        store: An open store or its directory.
        path: Output folder (see the module docstring).
        version: ``j``; None for the latest.
        engine: ``"single"`` (threads in this process) or ``"dask"``.
        scheduler: Dask scheduler address (``tcp://host:8786``); None starts a local cluster.
        workers: Threads (single) or local Dask workers; default the number of cores (up to
            8 threads or 4 workers).
        overwrite: Replace an existing output folder.
        rows_per_part: Rows per output partition; None for the stored partitions' ranges.

    Returns:
        What was written.

    Example:
        >>> export_embeddings("store", "out/v0", version=0, engine="dask")
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown export engine {engine!r}; choose one of {list(ENGINES)}")
    if scheduler and engine != "dask":
        raise ValueError("a scheduler address needs engine='dask'")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    if rows_per_part is not None and rows_per_part < 1:
        raise ValueError(f"rows_per_part must be positive, got {rows_per_part}")
    if not isinstance(store, EmbeddingStore):
        store = EmbeddingStore(store)  # checks the embedding matrices the export reads
    latest = store.entry(store.latest)
    emb = {k: latest.files[f"{k}_emb"] for k in sio.KINDS}
    if not store.verify:  # opened without checks: check what the export reads, once
        for rel in [*emb.values(), latest.files["ids"]]:
            sio.verify_file(store.root, rel, store.manifest.files[rel].sha256)
    j = store._version(version)
    out = Path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    manifest, manifest_sha = store._pointer
    ranges = _ranges(store, rows_per_part if rows_per_part or latest.parts else 131_072)
    offset = {"user": 0, "item": store.num_nodes("user")}
    root = str(store.root.resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    start = time.perf_counter()
    try:
        tasks = [
            _Task(
                root,
                manifest,
                manifest_sha,
                j,
                kind,
                emb[kind],
                latest.files["ids"],
                offset[kind],
                start,
                stop,
                str((tmp / f"part-{i:05d}.parquet").resolve()),
                store.space(j),
            )
            for i, (kind, start, stop) in enumerate(ranges)
        ]
        results = (
            _run_dask(tasks, scheduler, workers)
            if engine == "dask"
            else _run_single(tasks, workers)
        )
        rows = sum(r for r, _ in results)
        meta = {
            "version": j,
            "space": store.space(j),
            "latest": store.latest,
            "manifest": manifest,
            "dim": store.dim(j),
            "rows": rows,
            "parts": {Path(t.out).name: sha for t, (_, sha) in zip(tasks, results, strict=True)},
        }
        sio.write_bytes(tmp / _META, (json.dumps(meta, indent=1) + "\n").encode())
        sio.fsync_dir(tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
        sio.fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    logger.info(
        "exported %d rows of version %d to %s in %.2f s (%s)", rows, j, out, seconds, engine
    )
    return ExportResult(out, j, rows, len(tasks), store.dim(j), seconds, engine)
