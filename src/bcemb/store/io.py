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
import mmap
import os
import shutil
import stat
import tempfile
import threading
import weakref
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bcemb.store.errors import IntegrityError, StoreUnavailableError
from bcemb.utils import fsync_dir, fsync_file, new_file_mode  # re-exported for the store modules

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "ServedArray",
    "atomic_write_bytes",
    "check_relpath",
    "copy_file",
    "embedding_schema",
    "embedding_table",
    "embedding_type",
    "fsync_dir",
    "fsync_file",
    "open_npy",
    "read_table",
    "resolve_in",
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


def check_relpath(rel: object) -> str:
    """``rel`` if it is a plain relative POSIX path that stays below the folder it is joined to.

    Manifests are data: a crafted one must not make the store read, serve or delete a file
    outside it. Refused: non-strings, empty paths, absolute paths, ``.`` and ``..``
    components, backslashes and NUL characters.

    Raises:
        ValueError: The path is not such a path (the message says why).
    """
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"path {rel!r} is not a non-empty string")
    if "\\" in rel or "\0" in rel:
        raise ValueError(f"path {rel!r} holds a backslash or a NUL character")
    if rel.startswith("/"):
        raise ValueError(f"path {rel!r} is absolute")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts) or PurePosixPath(rel).is_absolute():
        raise ValueError(f"path {rel!r} is not a plain relative path (empty, '.' or '..' parts)")
    return rel


def _inside(base: str, path: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def resolve_in(root: Path, rel: str, *, parent_only: bool = False) -> Path:
    """``root/rel`` after checking that it resolves inside ``root`` (symlinks followed).

    Args:
        root: The store root.
        rel: A path relative to it (checked with :func:`check_relpath`).
        parent_only: Resolve only the parent folder: for deleting ``rel`` itself, which
            removes a symlink, never its target.

    Raises:
        IntegrityError: The path leaves the store (names it).
    """
    try:
        check_relpath(rel)
    except ValueError as err:
        raise IntegrityError(root / str(rel), f"refusing a path outside the store: {err}") from None
    path = root / rel
    base = os.path.realpath(root)
    target = os.path.realpath(path.parent if parent_only else path)
    if not _inside(base, target):
        raise IntegrityError(
            path, f"refusing a path outside the store: it resolves to {target} (a symlink out?)"
        )
    return path


def verify_file(root: Path, rel: str, sha256: str) -> Path:
    """Check ``root/rel`` against its recorded sha256 (and that it stays inside ``root``).

    Raises:
        IntegrityError: The file is missing, not a regular file inside the store, or its
            content changed; the error names it.
    """
    path = resolve_in(root, rel)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise IntegrityError(path, "missing file") from None
    except OSError as err:
        raise IntegrityError(path, f"cannot read the file: {err}") from None
    if stat.S_ISDIR(mode):
        raise IntegrityError(path, "expected a file, found a directory")
    if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
        raise IntegrityError(path, "not a regular file")
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise IntegrityError(path, "missing file") from None
    except OSError as err:
        raise IntegrityError(path, f"cannot read the file: {err}") from None
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
        os.fchmod(fd, new_file_mode())  # mkstemp makes 0600; honour the umask like open()
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
    except (ValueError, OSError, EOFError) as err:  # EOFError: an empty file
        raise IntegrityError(path, f"not a readable .npy array: {err}") from err


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    with open(fd, "rb", closefd=False) as fh:
        fh.seek(0)
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


class ServedArray:
    """A stored ``.npy`` matrix memory-mapped for serving, that notices when its file changes.

    The file is opened once; the checksum (when asked) is computed through that descriptor
    and the same descriptor is mapped, so the bytes served are the bytes verified. Before
    each read, :meth:`ensure_unchanged` compares the file's size and modification time
    (``fstat`` of the open descriptor, about a microsecond) with those seen at opening: a
    file truncated or rewritten in place is re-verified and, unless its content still
    matches the checksum, refused with :class:`StoreUnavailableError` instead of a SIGBUS
    or wrong vectors. A path replaced or removed (a publish deleting the old latest's files)
    does not affect the mapped file, which stays the verified one.

    Remaining window: a truncation between the check and the copy of the rows (microseconds)
    can still raise SIGBUS; in-place writers of store files are outside the store protocol.

    Args:
        path: The file (already checked to lie inside the store).
        sha256: Its recorded checksum.
        verify: Check the checksum now (otherwise only when the file changes).

    Attributes:
        array: The ``[N, D]`` float32 matrix (read-only, zero-copy).
        path: The file.
    """

    def __init__(self, path: Path, sha256: str, *, verify: bool = True) -> None:
        self.path = Path(path)
        self._sha256 = sha256
        self._lock = threading.Lock()
        self._refused: tuple[int, int] | None = None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise IntegrityError(path, "missing file") from None
        except OSError as err:
            raise IntegrityError(path, f"cannot open the file: {err.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise IntegrityError(path, "not a regular file")
            if verify and _sha256_fd(fd) != sha256:
                raise IntegrityError(path, "checksum mismatch: the file is corrupt or was modified")
            self.array = self._map(fd, st.st_size)
            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise IntegrityError(path, "the file changed while it was being opened")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._signature = (st.st_size, st.st_mtime_ns)
        self._finalizer = weakref.finalize(self, os.close, fd)

    def _map(self, fd: int, size: int) -> np.ndarray:
        path = self.path
        try:
            with open(fd, "rb", closefd=False) as fh:
                fh.seek(0)  # the checksum read the file to its end
                version = np.lib.format.read_magic(fh)
                reader = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }.get(version)
                if reader is None:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, fortran, dtype = reader(fh)
                offset = fh.tell()
        except (ValueError, EOFError, OSError, SyntaxError) as err:
            raise IntegrityError(path, f"not a readable .npy array: {err}") from None
        if dtype != np.dtype("<f4") or fortran or len(shape) != 2:
            raise IntegrityError(
                path, f"expected a C-ordered float32 matrix, got {dtype} {shape} (fortran={fortran})"
            )
        count = int(shape[0]) * int(shape[1])
        if size != offset + 4 * count:
            raise IntegrityError(
                path, f"{size} bytes, but its header describes {offset + 4 * count} (truncated or extended)"
            )
        if count == 0:
            return np.zeros(shape, np.float32)
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        return np.frombuffer(mapped, dtype=np.float32, count=count, offset=offset).reshape(shape)

    def ensure_unchanged(self) -> None:
        """Raise :class:`StoreUnavailableError` if the file changed and no longer verifies."""
        st = os.fstat(self._fd)
        if (st.st_size, st.st_mtime_ns) != self._signature:
            self._recheck()

    def _recheck(self) -> None:
        with self._lock:
            st = os.fstat(self._fd)
            now = (st.st_size, st.st_mtime_ns)
            if now == self._signature:
                return
            if now != self._refused:
                # Same size and the recorded checksum: touched, or rewritten identically.
                if now[0] == self._signature[0] and _sha256_fd(self._fd) == self._sha256:
                    logger.warning("%s was modified in place but still verifies; serving on", self.path)
                    self._signature = now
                    return
                self._refused = now
                logger.error("%s changed on disk since the store was opened; refusing to serve from it", self.path)
        raise StoreUnavailableError(
            f"{self.path}: changed on disk since the store was opened (now {now[0]} bytes, was "
            f"{self._signature[0]}) and no longer matches its checksum; not serving from it: "
            "restore the file or reopen the store",
            path=self.path,
        )


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
