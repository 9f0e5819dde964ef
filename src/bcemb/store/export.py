"""Export every stored node's ver-j compatible embeddings as Parquet, in one process or with Dask.

The rows come from the latest version's memory-mapped ``user_emb.npy`` / ``item_emb.npy``
(checked against the manifest when the store was opened, or here when it was opened without
checks): each task maps a range of rows through the composed matrix ``W_{j+1} ... W_k`` and
writes one partition. Nothing runs per row in Python. A task works in blocks of about 8 MiB
of output (one Parquet row group each): the product goes into one of two reused buffers, which
becomes the Arrow ``fixed_size_list<float32>`` column without a copy, while a writer thread
encodes the previous block (no compression), hashes the bytes on their way out and writes them
with direct I/O (see :class:`_HashedFile`). The largest tasks start first. By default the ranges
are those of the stored partitions.

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

import errno
import functools
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
    dim: int  # D_j
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


#: Output bytes per block: one product into a reused buffer, one Parquet row group. Reused
#: buffers spare page faults on fresh memory per block; readers get row groups of a few MiB.
#: At 512 -> 256 dims, 2 MiB blocks cost as much CPU (within noise), 32 MiB ones 5-10 % more.
_BLOCK_BYTES = 8 << 20
#: Direct I/O moves whole blocks from memory aligned to the disk's logical block size (512 or
#: 4096 bytes); 4096 suits both.
_ALIGN = 4096
#: Bytes staged for one direct write (a multiple of :data:`_ALIGN`).
_STAGE_BYTES = 4 << 20
#: Parquet settings for embedding tables: no compression (dense float32 vectors do not
#: compress), a dictionary for ``kind`` only (a dictionary attempt on the floats is wasted
#: work), statistics for ``kind`` and ``id`` only (min/max of vector elements help no reader).
_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "none",
    "use_dictionary": ["kind"],
    "write_statistics": ["kind", "id"],
}


def _block_rows(dim: int) -> int:
    """Rows per block (and row group) for vectors of ``dim`` float32."""
    return max(1024, _BLOCK_BYTES // (4 * max(dim, 1)))


class _HashedFile:
    """A new file, hashed (sha256) as it is written, through direct I/O where the system allows.

    An export writes gigabytes that this process does not read again. Through the page cache
    every byte is copied into freshly allocated kernel pages, which on the virtual machine
    measured here cost 0.3-1.8 s of CPU per GB, more than the Parquet encoding; ``O_DIRECT``
    hands whole aligned blocks from a reused staging buffer to the disk for about 0.05 s per
    GB. The unaligned tail, and everything where ``O_DIRECT`` is refused (macOS, some file
    systems), goes through the page cache. Hashing what goes out spares reading it back.

    Created ``0o666`` less the umask, like ``open()``; flushed to disk when its context ends
    without an error.
    """

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._sha = hashlib.sha256()
        # Set after open(): a file system without direct I/O refuses it here without effect.
        self._direct = _set_direct(self._fd, True)
        self._stage = _aligned_bytes(_STAGE_BYTES)
        self._fill = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        """Hash ``data`` and write it (in whole staged blocks while direct I/O is on)."""
        self._sha.update(data)  # releases the GIL on large buffers
        src = np.frombuffer(data, np.uint8)
        done = 0
        while done < src.size and self._direct:
            k = min(src.size - done, _STAGE_BYTES - self._fill)
            # numpy copies without the GIL, which the other export threads want meanwhile
            self._stage[self._fill : self._fill + k] = src[done : done + k]
            self._fill += k
            done += k
            if self._fill == _STAGE_BYTES:
                self._drain()
        if done < src.size:  # direct I/O is off: what is staged goes first
            self._drain()
            self._write_all(memoryview(data)[done:])
        return src.size

    def _drain(self) -> None:
        if self._fill:
            self._write_all(memoryview(self._stage[: self._fill]))
            self._fill = 0

    def _write_all(self, view: memoryview) -> None:
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except OSError as err:  # direct I/O refused this write: the page cache takes it
                if not (self._direct and err.errno == errno.EINVAL):
                    raise
                self._direct = _set_direct(self._fd, False)

    def flush(self) -> None:
        """Nothing to do before the end: :meth:`__exit__` writes the staged tail."""

    def hexdigest(self) -> str:
        """sha256 of everything written so far."""
        return self._sha.hexdigest()

    def __enter__(self) -> _HashedFile:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.closed = True
        try:
            if exc_type is None:
                self._direct = _set_direct(self._fd, False)  # the unaligned tail
                self._drain()
                os.fsync(self._fd)
        finally:
            os.close(self._fd)


def _aligned_bytes(size: int) -> np.ndarray:
    """``size`` bytes starting at a multiple of :data:`_ALIGN` (as ``O_DIRECT`` wants)."""
    raw = np.empty(size + _ALIGN, np.uint8)
    first = -raw.ctypes.data % _ALIGN
    return raw[first : first + size]


def _set_direct(fd: int, on: bool) -> bool:
    """Switch ``O_DIRECT`` on or off for ``fd``; whether it is on."""
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:  # not Linux: no direct I/O, and maybe no fcntl
        return False
    import fcntl

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | direct if on else flags & ~direct)
    except OSError:
        return False
    return on


_Mapper = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _mapper(matrix: np.ndarray | TransformChain | None, version: int) -> _Mapper:
    """``f(z, out)``: rows ``z`` of the latest version in version ``version``, in ``out`` if it can.

    ``out`` is a reused buffer of ``z``'s rows and the target dimension.
    """
    if matrix is None:  # the latest version itself: the stored rows, no copy
        return lambda z, out: np.ascontiguousarray(z, dtype=np.float32)
    if isinstance(matrix, np.ndarray):
        mt = matrix.T
        return lambda z, out: np.matmul(z, mt, out=out)
    chain = matrix

    def apply(z: np.ndarray, out: np.ndarray) -> np.ndarray:
        import torch

        z_t = torch.from_numpy(np.require(z, np.float32, ["C", "W"]))
        return chain.apply(z_t, version).numpy()

    return apply


def export_part(task: _Task) -> tuple[int, str]:
    """Map rows ``task.start:task.stop`` of one kind into version ``task.version`` and write them.

    Block by block: this thread computes a block into one of two reused buffers while a
    writer thread encodes the previous one as a Parquet row group, hashes and writes it, so
    the product and the writing overlap. The caller limits BLAS to one thread (see the
    module docstring).

    Returns:
        ``(rows, sha256 of the written file)``.
    """
    matrix = _matrix(task.root, task.manifest, task.manifest_sha256, task.version)
    mapper = _mapper(matrix, task.version)
    z = _rows(task.root, task.emb)
    ids = _ids(task.root, task.ids)
    n, dim = task.stop - task.start, task.dim
    schema = sio.embedding_schema(dim).with_metadata(
        {
            "bcemb.version": str(task.version),
            "bcemb.manifest": task.manifest,
            "bcemb.space": task.space,
        }
    )
    step = _block_rows(dim)
    buffers = [np.empty((min(step, n), dim), np.float32) for _ in range(2)]
    kind = pa.repeat(pa.scalar(task.kind, pa.string()), min(step, n))
    pending: deque[Future[None]] = deque()
    with (
        _HashedFile(Path(task.out)) as sink,
        pq.ParquetWriter(sink, schema, **_PARQUET_OPTIONS) as writer,
        ThreadPoolExecutor(1, thread_name_prefix="bcemb-export-write") as io,
    ):
        for i, a in enumerate(range(task.start, task.stop, step)):
            b = min(a + step, task.stop)
            if len(pending) == len(buffers):
                pending.popleft().result()  # the writer is done with buffers[i % 2]
            out = mapper(z[a:b], buffers[i % len(buffers)][: b - a])
            vectors = pa.FixedSizeListArray.from_arrays(  # shares out's buffer
                pa.array(out.reshape(-1)), type=sio.embedding_type(dim)
            )
            first = task.offset + a
            table = pa.Table.from_arrays(
                [kind[: b - a], ids[first : first + b - a], vectors], schema=schema
            )
            pending.append(io.submit(writer.write_table, table, row_group_size=b - a))
        while pending:
            pending.popleft().result()
    return n, sink.hexdigest()


def _dask_part(task: _Task) -> tuple[int, str]:
    # Dask workers may run several threads; every export task wants one BLAS thread, so set it
    # for the whole worker process (idempotent) rather than toggling it per task.
    threadpool_limits(limits=1, user_api="blas")
    return export_part(task)


def _largest_first(
    run: Callable[[list[_Task]], list[tuple[int, str]]], tasks: Sequence[_Task]
) -> list[tuple[int, str]]:
    """``run(tasks)`` with the largest ranges submitted first, results in the tasks' order.

    The stored partitions end with short remainders (one per kind); started last, they fill
    the gaps while the other workers finish, instead of leaving a large one to run alone.
    """
    order = sorted(range(len(tasks)), key=lambda i: tasks[i].start - tasks[i].stop)
    results = run([tasks[i] for i in order])
    out: list[tuple[int, str]] = [(0, "")] * len(tasks)
    for i, r in zip(order, results, strict=True):
        out[i] = r
    return out


def _run_single(tasks: Sequence[_Task], workers: int | None) -> list[tuple[int, str]]:
    n = workers or min(8, os.cpu_count() or 1)
    # The product, Arrow's encoding, hashing and writing release the GIL: threads over
    # partitions use every core without copying data between processes.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=n) as pool:
        return _largest_first(lambda ts: list(pool.map(export_part, ts)), tasks)


def _run_dask(
    tasks: Sequence[_Task], scheduler: str | None, workers: int | None
) -> list[tuple[int, str]]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "the dask engine needs the 'dask' extra: pip install 'bcemb[dask]'"
        ) from err

    def run(client: Client) -> list[tuple[int, str]]:
        return _largest_first(
            lambda ts: client.gather(client.map(_dask_part, ts, pure=False)), tasks
        )

    if scheduler:
        with Client(scheduler) as client:
            logger.info("exporting %d partitions on the Dask scheduler %s", len(tasks), scheduler)
            return run(client)
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
        return run(client)


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
                root=root,
                manifest=manifest,
                manifest_sha256=manifest_sha,
                version=j,
                dim=store.dim(j),
                kind=kind,
                emb=emb[kind],
                ids=latest.files["ids"],
                offset=offset[kind],
                start=begin,
                stop=end,
                out=str((tmp / f"part-{i:05d}.parquet").resolve()),
                space=store.space(j),
            )
            for i, (kind, begin, end) in enumerate(ranges)
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
