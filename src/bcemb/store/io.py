"""Low-level file handling of the store: checksums, durable writes, embedding tables.

Every file the store creates goes through :func:`fsync_file` once it is complete, so a crash
(or an injected fault in tests) can only ever leave unreferenced files behind; the store
pointer is switched last by :func:`atomic_write_bytes`.

Embedding tables (the latest embeddings, probe samples, exports) share one Parquet schema::

    kind       string                                "user" or "item"
    id         string                                the node's original id
    embedding  fixed_size_list<element: float32>[D]  the vector

Every field is declared non-nullable: Parquet then stores no definition levels for the
vectors, which makes reading them about three times faster.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bcemb.store.errors import IntegrityError
from bcemb.utils import fsync_dir, fsync_file  # re-exported for the store modules

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "atomic_write_bytes",
    "copy_file",
    "embedding_schema",
    "embedding_table",
    "embedding_type",
    "fsync_dir",
    "fsync_file",
    "open_npy",
    "read_table",
    "sha256_file",
    "table_vectors",
    "verify_file",
    "write_bytes",
    "write_npy",
    "write_table",
]

#: The two node kinds of a user-item graph, in the order they are stored.
KINDS: tuple[str, str] = ("user", "item")
_CHUNK = 1 << 22


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def verify_file(root: Path, rel: str, sha256: str) -> Path:
    """Check ``root/rel`` against its recorded sha256.

    Raises:
        IntegrityError: The file is missing or its content changed; the error names it.
    """
    path = root / rel
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise IntegrityError(path, "missing file") from None
    except IsADirectoryError:
        raise IntegrityError(path, "expected a file, found a directory") from None
    if actual != sha256:
        raise IntegrityError(path, "checksum mismatch: the file is corrupt or was modified")
    return path


def write_bytes(path: Path, data: bytes) -> None:
    """Write a new file and flush it (for files inside a private staging directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as fh:
        fh.write(data)
    fsync_file(path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically: write aside, flush, rename, flush the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def copy_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to a new file ``dst`` and flush it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(src, "rb") as fin, open(dst, "xb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
    except FileNotFoundError:
        if not Path(src).exists():
            raise FileNotFoundError(f"missing file: {src}") from None
        raise
    fsync_file(dst)


def write_npy(path: Path, array: np.ndarray) -> None:
    """Write a raw ``.npy`` array (no pickle) for memory-mapped serving, and flush it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as fh:
        np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)
    fsync_file(path)


def open_npy(path: Path) -> np.ndarray:
    """Memory-map a ``.npy`` file read-only (pickled object arrays are refused).

    Shapes:
        returns ``[N, D]`` for a stored embedding matrix.
    """
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise IntegrityError(path, "missing file") from None
    except (ValueError, OSError) as err:
        raise IntegrityError(path, f"not a readable .npy array: {err}") from err


def embedding_type(dim: int) -> pa.DataType:
    """``fixed_size_list<element: float32 not null>[dim]``."""
    return pa.list_(pa.field("element", pa.float32(), nullable=False), dim)


def embedding_schema(dim: int) -> pa.Schema:
    """The schema of an embedding table of dimension ``dim`` (see the module docstring)."""
    return pa.schema(
        [
            pa.field("kind", pa.string(), nullable=False),
            pa.field("id", pa.string(), nullable=False),
            pa.field("embedding", embedding_type(dim), nullable=False),
        ]
    )


def vectors_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """A float32 matrix as an ``embedding`` column, sharing its memory.

    Shapes:
        vectors: ``[N, D]``.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1)), type=embedding_type(vectors.shape[1])
    )


def embedding_table(
    kind: str | np.ndarray | pa.Array, ids: np.ndarray | pa.Array, vectors: np.ndarray
) -> pa.Table:
    """An embedding table (see the module docstring); ``vectors`` is shared, not copied.

    Args:
        kind: One kind for every row, or one per row.
        ids: Node ids (converted to strings).
        vectors: The vectors.

    Shapes:
        ids: ``[N]``; vectors: ``[N, D]`` float32.
    """
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"expected {len(ids)} vectors as a 2-D array, got shape {vectors.shape}")
    if isinstance(kind, str):
        kinds = pa.array([kind] * len(ids), pa.string())
    else:
        kinds = kind if isinstance(kind, pa.Array) else pa.array(kind, pa.string())
    if not isinstance(ids, pa.Array):
        ids = pa.array(np.asarray(ids, dtype=object).astype(str), pa.string())
    return pa.Table.from_arrays(
        [kinds, ids, vectors_array(vectors)], schema=embedding_schema(vectors.shape[1])
    )


def write_table(path: Path, table: pa.Table, metadata: dict[str, str] | None = None) -> None:
    """Write a Parquet table as a new file and flush it.

    Embeddings are dense floats: compression and dictionaries would cost time and save
    nothing, and statistics on them would be meaningless.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    if path.exists():
        raise FileExistsError(f"refusing to overwrite {path}")
    pq.write_table(
        table,
        path,
        compression="none",
        use_dictionary=["kind"] if "kind" in table.column_names else False,
        write_statistics=["kind", "id"],
        row_group_size=max(table.num_rows, 1),
    )
    fsync_file(path)


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet table, naming the file in any error."""
    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise IntegrityError(path, "missing file") from None
    except (OSError, pa.ArrowException) as err:
        raise IntegrityError(path, f"corrupt Parquet file: {err}") from err


def table_vectors(table: pa.Table, path: Path | str = "<table>") -> np.ndarray:
    """The ``embedding`` column as a float32 matrix (zero-copy where Arrow allows).

    Shapes:
        returns ``[N, D]``.
    """
    if "embedding" not in table.column_names:
        raise IntegrityError(path, "no 'embedding' column")
    col = table.column("embedding").combine_chunks()
    if not pa.types.is_fixed_size_list(col.type) or col.type.value_type != pa.float32():
        raise IntegrityError(path, f"'embedding' must be fixed_size_list<float32>, got {col.type}")
    dim = col.type.list_size
    if col.null_count:
        raise IntegrityError(path, "the 'embedding' column has null vectors")
    flat = col.flatten().to_numpy(zero_copy_only=False)  # flatten honours slice offsets
    return flat.reshape(len(col), dim)
