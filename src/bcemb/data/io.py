"""Save and load an :class:`~bcemb.data.graph.EvolvingGraph` as Parquet tables.

A graph folder holds::

    graph.json                 format version, name, sizes, id dtypes, feature groups, sha256 of every file
    edges.parquet              user int64, item int64, rating float32, timestamp int64|float64
    users.parquet              id (original user id of re-indexed user r at row r)
    items.parquet              id
    features/<g>.vocab.json    vocabulary of feature group number g (a JSON list of names)
    features/<g>.parquet       indices: large_list<int64>, one bag per item (the list offsets are the CSR offsets)

Writes are atomic: everything goes to a temporary folder beside the target, is flushed to disk,
then renamed into place, so a reader sees the old folder or the new one, never a half-written
one. Loading checks every file against its recorded checksum and names the file at fault.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bcemb.data.graph import DataError, EvolvingGraph, FeatureGroup
from bcemb.utils import fsync_dir, fsync_file

logger = logging.getLogger(__name__)

__all__ = ["GRAPH_FORMAT_VERSION", "load_graph", "save_graph"]

#: Bumped when the folder layout changes; a newer folder fails loudly on an older bcemb.
GRAPH_FORMAT_VERSION = 1
_META = "graph.json"
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file or a directory entry to disk."""
    (fsync_dir if path.is_dir() else fsync_file)(path)


def _id_kind(ids: np.ndarray) -> str:
    """How to restore an id column: ``int``, ``float``, ``str`` (numpy unicode) or ``object``."""
    if ids.dtype.kind in "iu":
        return "int"
    if ids.dtype.kind == "f":
        return "float"
    if ids.dtype.kind == "U":
        return "str"
    return "object"


def _id_array(ids: np.ndarray, what: str) -> pa.Array:
    try:
        return pa.array(ids.tolist() if ids.dtype.kind == "O" else ids)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise DataError(f"cannot store the {what} ids (mixed or unsupported types): {err}") from err


def save_graph(graph: EvolvingGraph, folder: str | Path, *, overwrite: bool = True) -> Path:
    """Write ``graph`` to ``folder`` as Parquet tables, atomically.

    Args:
        graph: The graph to store.
        folder: Target folder; created with its parents.
        overwrite: Replace an existing folder (default True). The new folder is complete
            before the old one is moved away.

    Returns:
        The folder.

    Example:
        >>> save_graph(make_synthetic(num_users=50, num_items=40, num_edges=400), "run/graph")
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it")
    _check_graph(graph)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        _write_tables(graph, tmp)
        _fsync(tmp)
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, folder)
        _fsync(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved %r to %s", graph, folder)
    return folder


def _check_graph(graph: EvolvingGraph) -> None:
    n = graph.num_edges
    for col in ("item", "rating", "timestamp"):
        if getattr(graph, col).shape[0] != n:
            raise DataError(
                f"graph column {col!r} has {getattr(graph, col).shape[0]} rows, user has {n}"
            )
    for name, group in graph.item_features.items():
        if group.num_items != graph.num_items:
            raise DataError(
                f"feature group {name!r} covers {group.num_items} items, the graph has {graph.num_items}"
            )


def _write_table(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")
    _fsync(path)


def _write_tables(graph: EvolvingGraph, root: Path) -> None:
    ts = np.asarray(graph.timestamp)
    ts = ts.astype(np.int64) if ts.dtype.kind in "iub" else ts.astype(np.float64)
    edges = pa.table(
        {
            "user": pa.array(np.asarray(graph.user, dtype=np.int64)),
            "item": pa.array(np.asarray(graph.item, dtype=np.int64)),
            "rating": pa.array(np.asarray(graph.rating, dtype=np.float32)),
            "timestamp": pa.array(ts),
        }
    )
    _write_table(edges, root / "edges.parquet")
    _write_table(pa.table({"id": _id_array(graph.user_ids, "user")}), root / "users.parquet")
    _write_table(pa.table({"id": _id_array(graph.item_ids, "item")}), root / "items.parquet")
    groups = []
    if graph.item_features:
        (root / "features").mkdir()
    for g, (name, group) in enumerate(graph.item_features.items()):
        vocab_file, bags_file = f"features/{g}.vocab.json", f"features/{g}.parquet"
        (root / vocab_file).write_text(json.dumps(list(group.vocab)))
        _fsync(root / vocab_file)
        bags = pa.LargeListArray.from_arrays(
            pa.array(np.asarray(group.offsets, dtype=np.int64)),
            pa.array(np.asarray(group.indices, dtype=np.int64)),
        )
        _write_table(pa.table({"indices": bags}), root / bags_file)
        groups.append({"name": name, "vocab": vocab_file, "bags": bags_file})
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    meta = {
        "format_version": GRAPH_FORMAT_VERSION,
        "name": graph.name,
        "num_edges": graph.num_edges,
        "num_users": graph.num_users,
        "num_items": graph.num_items,
        "user_id_kind": _id_kind(graph.user_ids),
        "item_id_kind": _id_kind(graph.item_ids),
        "feature_groups": groups,
        "files": {
            f: {"sha256": _sha256(root / f), "bytes": (root / f).stat().st_size} for f in files
        },
    }
    (root / _META).write_text(json.dumps(meta, indent=2) + "\n")
    _fsync(root / _META)


def load_graph(folder: str | Path, *, verify: bool = True) -> EvolvingGraph:
    """Read a graph written by :func:`save_graph`.

    Args:
        folder: The graph folder.
        verify: Check every file against the sha256 recorded in ``graph.json`` (default True).

    Returns:
        The graph, equal to the one saved.

    Raises:
        DataError: A missing, corrupt or inconsistent file; the message names it.
    """
    folder = Path(folder)
    meta = _read_meta(folder)
    files: dict[str, Any] = meta["files"]
    for rel, entry in files.items():
        path = folder / rel
        if not path.is_file():
            raise DataError(f"missing file: {path}")
        if verify and _sha256(path) != entry.get("sha256"):
            raise DataError(
                f"checksum mismatch: {path} is corrupt (its sha256 differs from {folder / _META})"
            )
    edges = _read_table(folder, "edges.parquet", files)
    user = _column(edges, "user", folder / "edges.parquet", np.int64)
    item = _column(edges, "item", folder / "edges.parquet", np.int64)
    rating = _column(edges, "rating", folder / "edges.parquet", np.float32)
    timestamp = _column(edges, "timestamp", folder / "edges.parquet", None)
    user_ids = _ids(
        _read_table(folder, "users.parquet", files), folder / "users.parquet", meta["user_id_kind"]
    )
    item_ids = _ids(
        _read_table(folder, "items.parquet", files), folder / "items.parquet", meta["item_id_kind"]
    )
    if (len(user), len(user_ids), len(item_ids)) != (
        meta["num_edges"],
        meta["num_users"],
        meta["num_items"],
    ):
        raise DataError(f"{folder}: table sizes differ from those recorded in {_META}")
    if len(user) and (
        user.min() < 0
        or user.max() >= len(user_ids)
        or item.min() < 0
        or item.max() >= len(item_ids)
    ):
        raise DataError(
            f"{folder / 'edges.parquet'}: an edge points outside the users or items tables"
        )
    groups: dict[str, FeatureGroup] = {}
    for spec in meta["feature_groups"]:
        vocab_path = folder / spec["vocab"]
        try:
            vocab = tuple(str(v) for v in json.loads(vocab_path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as err:
            raise DataError(f"unreadable feature vocabulary {vocab_path}: {err}") from err
        bags_path = folder / spec["bags"]
        table = _read_table(folder, spec["bags"], files)
        if "indices" not in table.column_names:
            raise DataError(f"{bags_path}: no 'indices' column")
        bags = table.column("indices").combine_chunks()
        offsets = np.asarray(bags.offsets, dtype=np.int64)
        indices = np.asarray(bags.values, dtype=np.int64)
        offsets = offsets - offsets[0]
        if len(offsets) - 1 != len(item_ids):
            raise DataError(f"{bags_path}: {len(offsets) - 1} bags for {len(item_ids)} items")
        if len(indices) and (indices.min() < 0 or indices.max() >= len(vocab)):
            raise DataError(
                f"{bags_path}: a feature index is outside the vocabulary of {len(vocab)}"
            )
        groups[spec["name"]] = FeatureGroup(vocab=vocab, indices=indices, offsets=offsets)
    return EvolvingGraph(
        user=user,
        item=item,
        rating=rating,
        timestamp=timestamp,
        user_ids=user_ids,
        item_ids=item_ids,
        item_features=groups,
        name=str(meta.get("name", "graph")),
    )


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / _META
    if not folder.is_dir():
        raise DataError(f"no graph folder at {folder}")
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(
            f"missing file: {path} (not a graph folder written by save_graph?)"
        ) from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"corrupt graph metadata {path}: {err}") from err
    if not isinstance(meta, dict):
        raise DataError(f"corrupt graph metadata {path}: not a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise DataError(f"{path}: missing or invalid format_version {version!r}")
    if version > GRAPH_FORMAT_VERSION:
        raise DataError(
            f"{path}: graph format {version} is newer than this bcemb reads ({GRAPH_FORMAT_VERSION}); upgrade bcemb"
        )
    required = (
        "num_edges",
        "num_users",
        "num_items",
        "user_id_kind",
        "item_id_kind",
        "feature_groups",
        "files",
    )
    missing = [k for k in required if k not in meta]
    if missing:
        raise DataError(f"{path}: missing fields {missing}")
    return meta


def _read_table(folder: Path, rel: str, files: dict[str, Any]) -> pa.Table:
    path = folder / rel
    if rel not in files:
        raise DataError(f"{path} is not listed in {folder / _META}")
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise DataError(f"missing file: {path}") from None
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"corrupt Parquet file {path}: {err}") from err


def _column(table: pa.Table, name: str, path: Path, dtype: type | None) -> np.ndarray:
    if name not in table.column_names:
        raise DataError(f"{path}: no {name!r} column")
    values = table.column(name).to_numpy()
    return values.astype(dtype, copy=False) if dtype is not None else values


def _ids(table: pa.Table, path: Path, kind: str) -> np.ndarray:
    values = _column(table, "id", path, None)
    if kind == "str":
        return values.astype(str)
    if kind == "object":
        return np.asarray(values, dtype=object)
    return values
