"""Export every stored node's ver-j compatible embeddings as Parquet, in one process or with Dask.

The stored latest embeddings are Parquet partitions; an export maps each partition through
the composed matrix ``W_{j+1} ... W_k`` into one output partition. Both engines run the same
partition function with single-threaded BLAS (a multi-threaded product may sum in another
order and differ in the last bit), so their outputs are identical byte for byte.

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

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from bcemb.models.io import load_transform
from bcemb.store import io as sio
from bcemb.store.manifest import read_manifest
from bcemb.store.store import EmbeddingStore, compose_matrix
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
    """One partition to export: plain strings, cheap to ship to a Dask worker."""

    root: str
    manifest: str
    manifest_sha256: str
    version: int
    part: str
    part_sha256: str
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
    transforms = []
    for entry in m.versions[1:]:
        rel = entry.files["transform"]
        transforms.append(load_transform(sio.verify_file(Path(root), rel, m.files[rel].sha256)))
    if not all(t.linear for t in transforms[version:]):
        return TransformChain(transforms)  # non-linear links: applied step by step
    return compose_matrix(transforms, version)


def export_part(task: _Task) -> tuple[int, str]:
    """Map one stored partition into version ``task.version`` and write it.

    The caller limits BLAS to one thread (see the module docstring).

    Returns:
        ``(rows, sha256 of the written file)``.
    """
    matrix = _matrix(task.root, task.manifest, task.manifest_sha256, task.version)
    src = sio.verify_file(Path(task.root), task.part, task.part_sha256)
    table = sio.read_table(src)
    z = sio.table_vectors(table, src)
    if matrix is None:
        out = z
    elif isinstance(matrix, TransformChain):
        out = matrix.apply(torch.from_numpy(np.require(z, np.float32, ["C", "W"])), task.version).numpy()
    else:
        out = z @ matrix.T
    result = sio.embedding_table(
        table.column("kind").combine_chunks(), table.column("id").combine_chunks(), out
    )
    meta = {
        "bcemb.version": str(task.version),
        "bcemb.manifest": task.manifest,
        "bcemb.space": task.space,
    }
    dst = Path(task.out)
    sio.write_table(dst, result, meta)
    return result.num_rows, sio.sha256_file(dst)


def _dask_part(task: _Task) -> tuple[int, str]:
    # Dask workers may run several threads; every export task wants one BLAS thread, so set it
    # for the whole worker process (idempotent) rather than toggling it per task.
    threadpool_limits(limits=1, user_api="blas")
    return export_part(task)


def _run_single(tasks: Sequence[_Task], workers: int | None) -> list[tuple[int, str]]:
    n = workers or min(8, os.cpu_count() or 1)
    # NumPy's product and Arrow's I/O release the GIL, so threads over partitions scale.
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


def export_embeddings(
    store: EmbeddingStore | str | Path,
    path: str | Path,
    *,
    version: int | None = None,
    engine: str = "single",
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
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
    if not isinstance(store, EmbeddingStore):
        # The export checks the transforms and every partition it reads; the serving arrays,
        # which opening would hash, are not needed.
        store = EmbeddingStore(store, verify=False)
    j = store._version(version)
    out = Path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    latest = store.entry(store.latest)
    manifest, manifest_sha = store._pointer
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    start = time.perf_counter()
    try:
        tasks = [
            _Task(
                str(store.root.resolve()),
                manifest,
                manifest_sha,
                j,
                part,
                store.manifest.files[part].sha256,
                str((tmp / f"part-{i:05d}.parquet").resolve()),
                store.space(j),
            )
            for i, part in enumerate(latest.parts)
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
