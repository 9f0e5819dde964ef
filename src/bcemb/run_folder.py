"""The run-folder format: one owner for what training writes and the store publishes.

Layout (``RUN_FORMAT`` 2)::

    RUN/config.json                        resolved configuration, method, seed, library
                                           versions, ``run_format``
    RUN/graph/                             the evolving graph (bcemb.data.io), graph models only
    RUN/version_<k>/model.safetensors      M_k (its ``to_config()`` in the metadata)
    RUN/version_<k>/transform.safetensors  B_k (k >= 1)
    RUN/version_<k>/embeddings.safetensors user_emb [U_k, D_k], item_emb [I_k, D_k] at t_k
    RUN/version_<k>/ids.parquet            (kind, id) of those rows, for runs without graph/
    RUN/version_<k>/metrics.json           validation metrics, best epoch, seconds
    RUN/version_<k>/curve.csv              the training curve
    RUN/version_<k>/done.json              written last: the version is finished
    RUN/.lock                              held while a process trains into the folder

Format 1 (no ``run_format`` key) is the same layout and is read as is.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from bcemb.utils import atomic_write_bytes, read_json, write_json

__all__ = [
    "RUN_FORMAT",
    "RunFolderError",
    "version_dir",
    "read_config",
    "claim",
    "finished_versions",
    "write_embeddings",
    "read_embeddings",
    "write_ids",
    "read_ids",
    "write_version_record",
    "read_metrics",
    "mark_done",
    "lock",
]

RUN_FORMAT = 2
CONFIG = "config.json"
MODEL = "model.safetensors"
TRANSFORM = "transform.safetensors"
EMBEDDINGS = "embeddings.safetensors"
IDS = "ids.parquet"
METRICS = "metrics.json"
CURVE = "curve.csv"
DONE = "done.json"
#: Keys of config.json that do not change the run's models: the environment, where it ran,
#: and the consumers (trained by the benchmark, not the run). Resuming may change them.
_VOLATILE = ("environment", "run_format", "started", "consumer", "device", "profile")


class RunFolderError(ValueError):
    """A run folder is missing, unreadable, of a newer format, or made by another configuration."""


def version_dir(run: str | Path, k: int) -> Path:
    """Folder of version ``k`` in a run."""
    return Path(run) / f"version_{k}"


def read_config(run: str | Path) -> dict[str, Any]:
    """The run's ``config.json``, checked for a readable format."""
    run = Path(run)
    if not run.is_dir():
        raise RunFolderError(f"no training run at {run}")
    try:
        config = read_json(run / CONFIG)
    except (FileNotFoundError, ValueError) as err:
        raise RunFolderError(f"cannot read the run's configuration: {err}") from err
    if not isinstance(config, dict):
        raise RunFolderError(f"{run / CONFIG} is not a JSON object")
    fmt = config.get("run_format", 1)
    if not isinstance(fmt, int) or fmt > RUN_FORMAT:
        raise RunFolderError(
            f"{run} was written in run format {fmt!r}; this bcemb reads up to {RUN_FORMAT}: upgrade bcemb"
        )
    return config


def claim(run: str | Path, record: Mapping[str, Any]) -> None:
    """Record the configuration of a run, or check that an existing run has the same one.

    Resuming into a folder is only safe when the folder was made by the same experiment;
    anything else would mix versions of two trainings, so it is refused.
    """
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    new = {**record, "run_format": RUN_FORMAT}
    if (run / CONFIG).is_file():
        old = read_config(run)
        a = {k: v for k, v in old.items() if k not in _VOLATILE}
        b = {k: v for k, v in new.items() if k not in _VOLATILE}
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise RunFolderError(
                f"{run} holds a run with another configuration (differs in: {', '.join(diff)}); "
                "use another --out folder, or delete it to start over"
            )
        if finished_versions(run):
            return  # keep the record of the run that trained the finished versions
    write_json(run / CONFIG, new)


def finished_versions(run: str | Path) -> list[int]:
    """Versions ``0..K`` of a run that are finished (``done.json``), without gaps."""
    done = []
    k = 0
    while (version_dir(run, k) / DONE).is_file():
        done.append(k)
        k += 1
    return done


def write_embeddings(vdir: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Published embeddings of a version (e.g. ``user_emb``, ``item_emb``), atomically."""
    atomic_write_bytes(
        vdir / EMBEDDINGS, st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    )


def read_embeddings(run: str | Path, k: int) -> dict[str, torch.Tensor]:
    """The embeddings of version ``k`` of a run (name -> ``[N, D]``)."""
    from bcemb.models.io import read_tensors

    tensors, _ = read_tensors(version_dir(run, k) / EMBEDDINGS)
    return tensors


def write_ids(vdir: Path, ids: Mapping[str, Sequence[object]]) -> None:
    """The ids of a version's embedding rows per kind (``user``, ``item``), as Parquet.

    Runs of graph models take their ids from ``RUN/graph``; any other model writes them here.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = [kind for kind, values in ids.items() for _ in values]
    flat = [str(v) for values in ids.values() for v in values]
    table = pa.table({"kind": pa.array(kinds, pa.string()), "id": pa.array(flat, pa.string())})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    atomic_write_bytes(vdir / IDS, buf.getvalue().to_pybytes())


def read_ids(run: str | Path, k: int) -> dict[str, list[str]] | None:
    """Ids per kind written by :func:`write_ids` (None when the version has none)."""
    import pyarrow.parquet as pq

    path = version_dir(run, k) / IDS
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        kinds = table.column("kind").to_pylist()
        values = table.column("id").to_pylist()
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise RunFolderError(f"corrupt or unreadable ids file {path}: {err}") from err
    out: dict[str, list[str]] = {}
    for kind, value in zip(kinds, values, strict=True):
        out.setdefault(str(kind), []).append(str(value))
    return out


def write_version_record(vdir: Path, metrics: Mapping[str, Any], curve: Sequence[Mapping[str, float]]) -> None:
    """``metrics.json`` and ``curve.csv`` of a version."""
    write_json(vdir / METRICS, dict(metrics))
    if curve:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
        atomic_write_bytes(vdir / CURVE, buf.getvalue().encode())


def read_metrics(run: str | Path, k: int) -> dict[str, Any]:
    """``metrics.json`` of version ``k``."""
    return read_json(version_dir(run, k) / METRICS)


def mark_done(vdir: Path, k: int) -> None:
    """Written last: version ``k`` is finished."""
    write_json(vdir / DONE, {"k": k, "finished": time.time()})


@contextlib.contextmanager
def lock(run: str | Path) -> Iterator[None]:
    """Hold the run folder for one training process; a second one fails at once."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl  # POSIX; elsewhere training proceeds unlocked

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except BlockingIOError:
            raise RunFolderError(f"{run} is being trained into by another process") from None
        yield
    finally:
        os.close(fd)
