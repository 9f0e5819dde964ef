"""The read side of a keep-latest embedding store: any old version, computed on the fly.

On-disk layout (``k`` is the latest version; paths relative to the store root)::

    CURRENT                              pointer to the current manifest (+ its sha256); switched last
    manifests/<seq>.json                 one per change, never rewritten (see bcemb.store.manifest)
    versions/<j>/transform.safetensors   B_j, j >= 1 (kept forever)
    versions/<j>/probes.parquet          probe sample of the real z_j (kept forever)
    versions/k/model.safetensors         M_k (the latest model, embeds new nodes)
    versions/k/graph/                    the graph at t_k (bcemb.data.io format)
    versions/k/user_emb.npy              z_k of users, float32 [U_k, D_k], memory-mapped for serving
    versions/k/item_emb.npy              z_k of items, float32 [I_k, D_k]
    versions/k/ids.parquet               kind, id: the node of each row (users first, then items)
    versions/k/embeddings/part-*.parquet kind, id, embedding: the same vectors for interchange

Node ids are the dataset's original ids, compared as strings (``1`` and ``"1"`` are the same
node), together with a ``kind``, ``"user"`` or ``"item"``: users and items are separate id
spaces.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from bcemb.data.graph import EvolvingGraph, FeatureGroup
from bcemb.data.io import load_graph
from bcemb.models.graph_input import GraphInput
from bcemb.models.io import load_model, load_transform
from bcemb.store import io as sio
from bcemb.store.errors import (
    IntegrityError,
    MissingPointerError,
    StoreError,
    StoreFormatError,
    UnknownIdsError,
    UnknownVersionError,
)
from bcemb.store.fingerprint import SpaceVectors, manifest_space
from bcemb.store.id_table import IdTable
from bcemb.store.manifest import (
    POINTER,
    Manifest,
    VersionEntry,
    manifest_names,
    read_manifest,
    read_pointer,
)
from bcemb.transforms import BackwardTransform, TransformChain

if TYPE_CHECKING:
    from bcemb.store.export import ExportResult

logger = logging.getLogger(__name__)

__all__ = [
    "CheckReport",
    "EmbeddingStore",
    "NodeEmbeddings",
    "UsageReport",
    "VersionCheck",
    "VersionUsage",
    "check_store",
    "compose_matrix",
]

_OPEN_RETRIES = 5
#: From this many ids, :meth:`EmbeddingStore.rows` asks the compiled table (when built): for a
#: few ids the dict costs less than the call.
_TABLE_MIN_IDS = 8


def compose_matrix(transforms: Sequence[BackwardTransform], version: int) -> np.ndarray:
    """``W_{j+1} ... W_k`` for the chain ``transforms = [B_1, .., B_k]`` as float32 NumPy.

    The composition itself is :meth:`bcemb.transforms.TransformChain.matrix` (float64, shared
    by ``get`` and every export worker so that they agree bit for bit).

    Shapes:
        returns ``[D_j, D_k]``.
    """
    if not 0 <= version <= len(transforms):
        raise UnknownVersionError(version, list(range(len(transforms) + 1)))
    if not transforms:
        return np.eye(0, dtype=np.float32)
    return np.ascontiguousarray(TransformChain(transforms).matrix(version).numpy(), dtype=np.float32)


def _no_pointer(root: Path) -> None:
    """Raise the right error for a store without ``CURRENT``."""
    if not root.is_dir():
        raise StoreError(f"no store at {root}")
    names = manifest_names(root)
    if names:
        raise MissingPointerError(
            root / POINTER,
            f"missing store pointer, but the store holds {len(names)} manifest(s) (newest {names[0]}): "
            "an interrupted first publish or a deleted pointer. `bcemb store gc` restores it to the "
            "newest manifest whose files are all intact",
        )
    raise StoreError(f"{root} is an empty store (no CURRENT): publish a run first")


def _check_kind(kind: str) -> str:
    if kind not in sio.KINDS:
        raise ValueError(f"kind must be 'user' or 'item', got {kind!r}")
    return kind


def _as_keys(ids: Iterable[object], what: str = "ids") -> list[str]:
    """Ids as strings; integers and strings are accepted, anything else is an error."""
    keys = []
    for i in ids:
        if isinstance(i, str):
            keys.append(i)
        elif isinstance(i, int | np.integer) and not isinstance(i, bool):
            keys.append(str(int(i)))
        else:
            raise TypeError(f"{what} must be strings or integers, got {i!r} ({type(i).__name__})")
    return keys


_INDEX_BLOCK = 16_384


class _IdIndex:
    """Row of each id of one kind: a plain dict, the fastest lookup for a few ids.

    (A pandas index costs tens of microseconds per call and hashes strings as UTF-8, which
    fails on lone surrogates; a dict hashes them like any other string.)
    """

    __slots__ = ("rows",)

    def __init__(self, ids: list[str], path: Path, kind: str) -> None:
        # A block of ids per call: the service opens a new snapshot while it answers, and one
        # call over 100,000 ids holds the GIL for tens of milliseconds.
        self.rows: dict[str, int] = {}
        for start in range(0, len(ids), _INDEX_BLOCK):
            end = start + _INDEX_BLOCK
            self.rows.update(zip(ids[start:end], range(start, end)))  # (zip stops at the ids' end)
        if len(self.rows) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise IntegrityError(path, f"duplicate {kind} id {dup!r}: every id must have one row")

    def get_indexer(self, keys: Sequence[str]) -> np.ndarray:
        """Row of each key, -1 for unknown ones (like :meth:`pandas.Index.get_indexer`)."""
        get = self.rows.get
        return np.fromiter((get(k, -1) for k in keys), dtype=np.intp, count=len(keys))


@dataclass(frozen=True)
class NodeEmbeddings:
    """Embeddings of some nodes in one version's space.

    Attributes:
        kind: ``"user"`` or ``"item"``.
        ids: The nodes, in row order.
        version: The version the vectors are compatible with.
        vectors: Shape ``[len(ids), D_version]``, float32.
    """

    kind: str
    ids: tuple[str, ...]
    version: int
    vectors: np.ndarray


@dataclass(frozen=True)
class VersionCheck:
    """Alignment of the chain on one version's probe sample.

    Attributes:
        version: ``j``.
        dim: ``D_j``.
        num_probes: Probe nodes.
        missing: Probe nodes absent from the latest embeddings (should be 0).
        mean_error: Mean over probes of ``||B_{j+1} o ... o B_k (z_k) - z_j||_2``.
        max_error: Largest such distance.
        relative_error: ``mean_error`` divided by the mean ``||z_j||_2``.
    """

    version: int
    dim: int
    num_probes: int
    missing: int
    mean_error: float
    max_error: float
    relative_error: float


@dataclass(frozen=True)
class CheckReport:
    """Result of :meth:`EmbeddingStore.check`.

    Attributes:
        manifest: The manifest checked.
        latest: ``k``.
        problems: Integrity problems, each naming a file (empty when all is well).
        versions: One alignment figure per version (the latest is a self-check, error 0).
        model_check: How well the stored model reproduces the stored embeddings.
    """

    manifest: str
    latest: int
    problems: tuple[str, ...]
    versions: tuple[VersionCheck, ...]
    model_check: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """No integrity problem."""
        return not self.problems


@dataclass(frozen=True)
class VersionUsage:
    """Bytes one version takes or would take.

    Attributes:
        version: ``j``.
        transform_bytes: ``B_j`` (0 for version 0).
        probe_bytes: Its probe sample.
        embedding_bytes: Its full embeddings in the store's format (estimated when retired).
        model_bytes: ``M_j``'s file (recorded at publish time).
        embeddings_kept: Whether the embeddings are on disk.
        model_kept: Whether the model is on disk.
    """

    version: int
    transform_bytes: int
    probe_bytes: int
    embedding_bytes: int
    model_bytes: int
    embeddings_kept: bool
    model_kept: bool


@dataclass(frozen=True)
class UsageReport:
    """Disk usage of the store next to what keep-all would need.

    Attributes:
        versions: Per-version figures.
        graph_bytes: The latest graph snapshot.
        manifest_bytes: All manifests.
        stored_bytes: What the store holds now.
        keep_latest_bytes: Transforms, probes, latest embeddings, latest model, graph, manifests.
        keep_all_bytes: Every version's embeddings and model, graph, manifests.
    """

    versions: tuple[VersionUsage, ...]
    graph_bytes: int
    manifest_bytes: int
    stored_bytes: int
    keep_latest_bytes: int
    keep_all_bytes: int

    @property
    def saving(self) -> float:
        """``1 - keep_latest / keep_all``."""
        return 1.0 - self.keep_latest_bytes / self.keep_all_bytes if self.keep_all_bytes else 0.0


class EmbeddingStore:
    """Serve any version's embeddings from the latest ones and the chain of transforms.

    Opening reads the current manifest, checks the files it needs (``verify``), loads the
    transforms and memory-maps the latest embeddings. The object is a snapshot: a later
    publish does not change it (see :meth:`is_stale` and :meth:`reload`). It is safe to use
    from several threads.

    Args:
        root: The store directory.
        verify: Check the sha256 of every file read at opening (default True). The
            embedding partitions are checked when exported, the model and graph when used.

    Example:
        >>> store = EmbeddingStore("store")
        >>> z0 = store.get(["196", "186"], kind="user", version=0)  # [2, D_0]
    """

    def __init__(self, root: str | Path, *, verify: bool = True) -> None:
        self.root = Path(root)
        self.verify = verify
        self._lock = threading.Lock()
        self._model: nn.Module | None = None
        self._graph: EvolvingGraph | None = None
        for attempt in range(_OPEN_RETRIES):
            pointer = read_pointer(self.root)
            if pointer is None:
                _no_pointer(self.root)
            try:
                self._open(pointer)
                return
            except IntegrityError:
                # A change committed while we were opening may have removed files of the state
                # we started from; open the new state instead. Otherwise the error is real.
                if attempt == _OPEN_RETRIES - 1 or read_pointer(self.root) == pointer:
                    raise
                logger.debug("store %s changed while opening; retrying", self.root)

    def _open(self, pointer: tuple[str, str]) -> None:
        manifest = read_manifest(self.root, *pointer)
        self._pointer = pointer
        self.manifest: Manifest = manifest
        latest = manifest.versions[manifest.latest]
        transforms = [self._load_transform(v.files["transform"]) for v in manifest.versions[1:]]
        self.chain = TransformChain(transforms)
        self._matrices: dict[int, np.ndarray] = {}
        self._spaces: dict[int, str] = {}
        # Ver-j views kept in memory by materialize(): (kind, j) -> [N, D_j] float32.
        self._views: dict[tuple[str, int], np.ndarray] = {}
        ids_path = self._file(latest.files["ids"])
        ids = sio.read_table(ids_path, columns=["kind", "id"])
        try:
            kinds = ids.column("kind").to_numpy(zero_copy_only=False)
            all_ids = ids.column("id").to_numpy(zero_copy_only=False)
        except (KeyError, pa.ArrowException) as err:
            raise IntegrityError(ids_path, f"malformed id table: {err}") from None
        self._ids = {k: np.asarray(all_ids[kinds == k], dtype=object) for k in sio.KINDS}
        for k, v in self._ids.items():
            if not all(isinstance(i, str) for i in v):
                raise IntegrityError(ids_path, f"the {k} ids must all be strings")
        self._index = {k: _IdIndex(v.tolist(), ids_path, k) for k, v in self._ids.items()}
        self._tables: dict[str, IdTable] = {}  # compiled lookups (index_ids), when built
        self._served = {
            k: sio.ServedArray(
                self._file(latest.files[f"{k}_emb"], verify=False),
                manifest.files[latest.files[f"{k}_emb"]].sha256,
                verify=self.verify,
            )
            for k in sio.KINDS
        }
        self._emb = {k: a.array for k, a in self._served.items()}
        if self.verify:  # the checksum just read every byte; NaN rows would be served as null
            for k in sio.KINDS:
                if bad_rows := _nonfinite_rows(self._emb[k]):
                    raise IntegrityError(
                        self._served[k].path, f"{bad_rows} row(s) hold NaN or infinite values"
                    )
        if len(kinds) != latest.num_users + latest.num_items:
            raise IntegrityError(
                ids_path,
                f"{len(kinds)} rows, expected {latest.num_users} users and {latest.num_items} "
                "items (a kind other than 'user' or 'item'?)",
            )
        for k, n in (("user", latest.num_users), ("item", latest.num_items)):
            if self._emb[k].shape == (n, latest.dim) and len(self._ids[k]) != n:
                raise IntegrityError(  # the matrix is as the manifest says: blame the ids
                    ids_path, f"{len(self._ids[k])} {k} ids for the {n} {k} rows the manifest lists"
                )
            if self._emb[k].shape != (n, latest.dim) or len(self._ids[k]) != n:
                raise IntegrityError(
                    self.root / latest.files[f"{k}_emb"],
                    f"expected {n} x {latest.dim} {k} embeddings with ids, got {self._emb[k].shape} "
                    f"and {len(self._ids[k])} ids",
                )
        for transform, entry in zip(transforms, manifest.versions[1:], strict=True):
            if (transform.in_dim, transform.out_dim) != (
                entry.dim,
                manifest.versions[entry.version - 1].dim,
            ):
                raise IntegrityError(
                    self.root / entry.files["transform"], "dimensions differ from the manifest"
                )

    def _load_transform(self, rel: str) -> BackwardTransform:
        path = self._file(rel)
        try:
            transform = load_transform(path)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise IntegrityError(path, f"not a readable transform: {err}") from None
        # A checksum only says the file is the one published; NaN weights would turn every
        # vector served through this link into NaN (JSON null), so they are refused here.
        if not all(torch.isfinite(t).all() for t in transform.state_dict().values()):
            raise IntegrityError(path, "the transform holds NaN or infinite weights")
        return transform

    def _file(self, rel: str, *, verify: bool | None = None) -> Path:
        """Path of a stored file inside the store, checked against the manifest's sha256."""
        if rel not in self.manifest.files:
            raise IntegrityError(self.root / rel, "not listed in the manifest")
        if self.verify if verify is None else verify:
            return sio.verify_file(self.root, rel, self.manifest.files[rel].sha256)
        return sio.resolve_in(self.root, rel)

    # ------------------------------------------------------------------ description

    def __repr__(self) -> str:
        return (
            f"EmbeddingStore({str(self.root)!r}, latest={self.latest}, "
            f"dims={[v.dim for v in self.manifest.versions]}, "
            f"users={self.num_nodes('user')}, items={self.num_nodes('item')})"
        )

    @property
    def latest(self) -> int:
        """``k``: the version whose embeddings are stored."""
        return self.manifest.latest

    @property
    def versions(self) -> list[int]:
        """Every version the store serves, ``0..k``."""
        return list(range(self.latest + 1))

    def entry(self, version: int) -> VersionEntry:
        """The manifest entry of a version."""
        return self.manifest.versions[self._version(version)]

    def dim(self, version: int | None = None) -> int:
        """``D_j`` (the latest's when ``version`` is None)."""
        return self.entry(self._version(version)).dim

    def num_nodes(self, kind: str) -> int:
        """Users or items of the latest version."""
        return len(self._ids[_check_kind(kind)])

    def ids(self, kind: str) -> np.ndarray:
        """Ids of the latest version's users or items, in row order. Shape ``[N]``."""
        return self._ids[_check_kind(kind)]

    def describe(self) -> list[dict[str, Any]]:
        """One JSON-able summary per version (for listings and the HTTP service)."""
        return [
            {
                "version": v.version,
                "parent": v.parent,
                "dim": v.dim,
                "method": v.method,
                "lam": v.lam,
                "created": v.created,
                "num_users": v.num_users,
                "num_items": v.num_items,
                "transform": v.transform["kind"] if v.transform else None,
                # How get() reaches this version from the latest: one composed matrix, or
                # step by step when a link on the way is non-linear.
                "applied": "latest"
                if v.version == self.latest
                else ("one matrix" if self.chain.linear_to(v.version) else "step by step"),
                "embeddings": "kept" if v.embeddings_kept else "retired",
                "model": "kept" if v.model_kept else ("none" if not v.model_bytes else "retired"),
                "num_probes": v.num_probes,
            }
            for v in self.manifest.versions
        ]

    def _version(self, version: int | None) -> int:
        if version is None:
            return self.latest
        if (
            isinstance(version, bool)
            or not isinstance(version, int | np.integer)
            or not 0 <= version <= self.latest
        ):
            raise UnknownVersionError(version, self.versions)
        return int(version)

    # ------------------------------------------------------------------ serving

    def matrix(self, version: int) -> np.ndarray:
        """The composed ``W_{j+1} ... W_k``, cached. Shape ``[D_j, D_k]``, float32.

        Raises:
            TypeError: A link on the way is non-linear (then :meth:`get` applies the chain
                step by step).
        """
        j = self._version(version)
        m = self._matrices.get(j)
        if m is None:
            with self._lock:
                if j not in self._matrices:
                    self._matrices[j] = compose_matrix(self.chain.transforms, j)
            m = self._matrices[j]
        return m

    def transform(self, z: np.ndarray, *, version: int) -> np.ndarray:
        """Ver-``version`` compatible vectors from latest ones, with one matrix product.

        Shapes:
            z: ``[N, D_k]`` -> ``[N, D_version]``.
        """
        j = self._version(version)
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.dim():
            raise ValueError(
                f"expected latest embeddings of shape [N, {self.dim()}], got {z.shape}"
            )
        if not np.isfinite(z).all():
            raise ValueError("the embeddings hold NaN or infinite values")
        if j == self.latest:
            return z
        return self._map(z, j)

    def _map(self, z: np.ndarray, j: int) -> np.ndarray:
        """Latest vectors into version ``j``: one product, or step by step past non-linear links."""
        m = self._matrices.get(j)
        if m is not None or self.chain.linear_to(j):
            return z @ (m if m is not None else self.matrix(j)).T
        # A non-linear link (the residual MLP family) has no matrix: apply the chain's plan,
        # where runs of linear links are still one composed product each.
        return self.chain.apply(torch.from_numpy(np.require(z, np.float32, ["C", "W"])), j).numpy()

    def index_ids(self) -> bool:
        """Build compiled lookup tables of both kinds' ids (:class:`~bcemb.store.id_table.IdTable`,
        needs numba), so that :meth:`rows` of many ids costs a fraction of the dict's cache misses.

        About 0.3 s per 100,000 ids (plus compiling once per machine) and 64-128 bytes of memory
        per id plus a copy of the ids. The service builds them with the views; a library user
        may call this after opening. Returns whether they were built (False without numba: the
        dict answers, as always).
        """
        for kind, index in self._index.items():
            if kind not in self._tables:
                table = IdTable.build(list(index.rows))  # the ids in row order (dict order)
                if table is None:
                    return False
                self._tables[kind] = table
        return True

    def rows(self, ids: Iterable[object], *, kind: str = "user") -> np.ndarray:
        """Row of each id in the latest embeddings.

        Raises:
            UnknownIdsError: Some ids are unknown (all are listed on the error).
        """
        index = self._index.get(kind)
        if index is None:
            _check_kind(kind)
        if isinstance(ids, str | bytes):
            raise TypeError(f"ids must be a sequence of ids, got the single {type(ids).__name__} {ids!r}")
        if not isinstance(ids, list | tuple):
            ids = list(ids)  # a generator is read once; the fallback below reads it again
        if len(ids) >= _TABLE_MIN_IDS and type(ids) is list:
            table = self._tables.get(kind)
            found = table.rows(ids) if table is not None else None  # type: ignore[arg-type]
            if found is not None:
                return found
        rows = index.rows  # type: ignore[union-attr]
        try:  # the common case: known string ids, one dict lookup each
            return np.fromiter(map(rows.__getitem__, ids), dtype=np.intp, count=len(ids))
        except (KeyError, TypeError):
            pass
        keys = _as_keys(ids)  # integers, or an error naming the bad id
        found = index.get_indexer(keys)  # type: ignore[union-attr]
        if (found < 0).any():
            missing = list(dict.fromkeys(k for k, r in zip(keys, found, strict=True) if r < 0))
            raise UnknownIdsError(kind, missing, len(keys))
        return found

    def get(
        self, ids: Sequence[object], *, version: int | None = None, kind: str = "user"
    ) -> np.ndarray:
        """Ver-``version`` compatible embeddings of stored nodes.

        ``z~_j = B_{j+1} o ... o B_k (z_k)``, computed on the fly with the cached composed
        matrix.

        Args:
            ids: Original ids of users or items (strings or integers).
            version: ``j``; None for the latest.
            kind: ``"user"`` or ``"item"``.

        Returns:
            The vectors, float32, in the order of ``ids``: a :class:`SpaceVectors` array that
            carries ``space`` and ``version`` (combining it with vectors of another space raises).

        Shapes:
            returns ``[len(ids), D_j]``.

        Raises:
            UnknownIdsError: Unknown ids (named on the error).
            UnknownVersionError: A version the store does not have.
        """
        version = None if version is None else self._version(version)  # an unknown version first
        return self.get_rows(self.rows(ids, kind=kind), version=version, kind=kind)

    def get_rows(self, rows: np.ndarray, *, version: int | None = None, kind: str = "user") -> np.ndarray:
        """:meth:`get` by row numbers (from :meth:`rows`), for callers that look ids up once
        and then read the rows in blocks.

        Shapes:
            rows ``[N]`` -> returns ``[N, D_version]``.
        """
        latest = self.manifest.latest
        j = latest if version is None else self._version(version)
        self.ensure_unchanged(kind)
        if j == latest:
            z = self._emb[kind][rows]  # a copy of the rows (fancy indexing), float32
        else:
            view = self._views.get((kind, j))
            z = view[rows] if view is not None else self._map(self._emb[kind][rows], j)
        # Tagged with their space, so that mixing versions through the library raises.
        return SpaceVectors(z, self.space(j), j)

    def ensure_unchanged(self, kind: str = "user") -> None:
        """Raise :class:`StoreUnavailableError` if the served ``kind`` embeddings file changed
        on disk since opening and no longer verifies.

        Checksums were verified at opening; this is only a cheap ``fstat`` (see ServedArray),
        done by every read, also by readers of cached answers.
        """
        self._served[kind].ensure_unchanged()

    def space(self, version: int | None = None) -> str:
        """Fingerprint of the space of ver-``version`` vectors (see :mod:`bcemb.store.fingerprint`)."""
        j = self._version(version)
        space = self._spaces.get(j)
        if space is None:  # a snapshot's spaces never change: hash once
            space = self._spaces[j] = str(manifest_space(self.manifest, j))
        return space

    # ------------------------------------------------------------------ materialized views

    def view_bytes(self, version: int) -> int:
        """Memory a materialized ver-``version`` view takes (users and items, float32)."""
        return 4 * self.dim(version) * sum(self.num_nodes(k) for k in sio.KINDS)

    def materialize(
        self, versions: Iterable[int] | None = None, *, max_bytes: int | None = None, block_rows: int = 16_384
    ) -> list[int]:
        """Keep ver-j views of every stored node in memory, so that :meth:`get` of those
        versions is a row gather with no product.

        A request of 100 ids at version j otherwise pays a ``[100, D_k] x [D_k, D_j]``
        product (a few hundred microseconds on one core), more than the rest of an HTTP
        answer. The views are computed with the same products as :meth:`get` (block by
        block), cost ``4 * D_j`` bytes per node and version, and belong to this snapshot.

        Args:
            versions: Versions to keep (default every version but the latest, oldest first).
            max_bytes: Stop before the views would take more than this (None: no limit).
            block_rows: Rows per product (the service materializes while it answers: the
                smaller the block, the shorter each hold of the GIL around its BLAS call).

        Returns:
            The versions materialized (now or before).
        """
        todo = list(range(self.latest)) if versions is None else [self._version(v) for v in versions]
        done: list[int] = []
        used = sum(a.nbytes for a in self._views.values())
        for j in todo:
            if j == self.latest or self._has_view(j):
                done.append(j)
                continue
            need = self.view_bytes(j)
            if max_bytes is not None and used + need > max_bytes:
                break
            for kind in sio.KINDS:
                z = self._emb[kind]
                out = np.empty((len(z), self.dim(j)), np.float32)
                for start in range(0, len(z), block_rows):
                    out[start : start + block_rows] = self._map(np.asarray(z[start : start + block_rows]), j)
                self._views[(kind, j)] = out  # one dict assignment: readers see all or nothing
            used += need
            done.append(j)
        return done

    def precomputed(self, version: int | None = None) -> bool:
        """Whether :meth:`get` of ``version`` is a row gather with no product (the latest, or a
        materialized version)."""
        j = self._version(version)
        return j == self.latest or self._has_view(j)

    @property
    def materialized(self) -> list[int]:
        """Versions whose views are kept in memory (see :meth:`materialize`)."""
        return sorted({j for _, j in self._views if self._has_view(j)})

    def _has_view(self, j: int) -> bool:
        """Whether ver-``j`` views of every kind are kept (a version's kinds are added one at a
        time)."""
        return all((k, j) in self._views for k in sio.KINDS)

    # ------------------------------------------------------------------ new nodes

    def _model_and_graph(self) -> tuple[nn.Module, EvolvingGraph]:
        with self._lock:
            if self._model is None or self._graph is None:
                latest = self.manifest.versions[self.latest]
                if "graph" not in latest.files:
                    raise StoreError(
                        f"version {self.latest} was published from a model without a graph: embed new "
                        "inputs with that model and map them with EmbeddingStore.transform(z, version=j)"
                    )
                try:
                    model_path = self._file(latest.files["model"])
                    try:
                        model = load_model(model_path)
                    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
                        raise IntegrityError(model_path, f"not a readable model: {err}") from None
                    graph_dir = latest.files["graph"]
                    for rel in self.manifest.files:
                        if rel.startswith(graph_dir + "/"):
                            self._file(rel)
                    graph = load_graph(self.root / graph_dir, verify=False)
                except IntegrityError:
                    if self.is_stale():
                        raise StoreError(
                            f"the store {self.root} changed since it was opened and the model of version "
                            f"{self.latest} is gone; reopen the store"
                        ) from None
                    raise
                self._model, self._graph = model, graph
        return self._model, self._graph

    @torch.no_grad()
    def embed_new(
        self,
        edges: Iterable[tuple[object, object]],
        *,
        ids: Sequence[object] | None = None,
        kind: str = "user",
        version: int | None = None,
        item_features: Mapping[str, Mapping[object, Iterable[str]]] | None = None,
    ) -> NodeEmbeddings:
        """Embed nodes with the latest model after adding new edges, then transform them.

        The edges are added to the stored graph at ``t_k``; users and items not in the store
        become new nodes (new items take their feature bags from ``item_features``; feature
        names outside the model's vocabulary are ignored). ``M_k`` embeds the extended graph
        and the requested nodes are mapped into version ``version`` like stored ones. Existing
        nodes next to the new edges get updated vectors too.

        Args:
            edges: ``(user id, item id)`` pairs with original ids.
            ids: Nodes of ``kind`` to return; default the new nodes of that kind.
            kind: ``"user"`` or ``"item"``.
            version: ``j``; None for the latest.
            item_features: ``{group: {item id: [feature names]}}`` for new items.

        Returns:
            The requested nodes' vectors in version ``j``.

        Shapes:
            vectors: ``[len(ids), D_j]``.
        """
        j = self._version(version)
        _check_kind(kind)
        model, graph = self._model_and_graph()
        pairs = [tuple(e) for e in edges]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("edges must be (user id, item id) pairs")
        users = _as_keys((p[0] for p in pairs), "user ids")
        items = _as_keys((p[1] for p in pairs), "item ids")
        features = {
            g: {str(i): list(b) for i, b in m.items()} for g, m in (item_features or {}).items()
        }
        unknown_groups = set(features) - set(graph.item_features)
        if unknown_groups:
            raise ValueError(
                f"unknown item feature groups {sorted(unknown_groups)}; the model knows {sorted(graph.item_features)}"
            )
        featured = list(dict.fromkeys(i for m in features.values() for i in m))
        known_featured = [
            i
            for i, r in zip(featured, self._index["item"].get_indexer(featured), strict=True)
            if r >= 0
        ]
        if known_featured:
            raise ValueError(
                f"item features given for stored items {known_featured[:5]}; only new items take features"
            )

        def extend(kind_: str, keys: list[str]) -> tuple[np.ndarray, list[str]]:
            rows = self._index[kind_].get_indexer(keys) if keys else np.zeros(0, dtype=np.int64)
            new = list(dict.fromkeys(k for k, r in zip(keys, rows, strict=True) if r < 0))
            base = self.num_nodes(kind_)
            pos = {k: base + n for n, k in enumerate(new)}
            rows = np.array(
                [r if r >= 0 else pos[k] for k, r in zip(keys, rows, strict=True)], dtype=np.int64
            )
            return rows, new

        user_rows, new_users = extend("user", users)
        item_rows, new_items = extend("item", items + featured)
        item_rows = item_rows[: len(items)]
        n_users, n_items = graph.num_users + len(new_users), graph.num_items + len(new_items)
        groups = {}
        for name, group in graph.item_features.items():
            vocab = {v: f for f, v in enumerate(group.vocab)}
            bags = [
                [vocab[v] for v in features.get(name, {}).get(i, ()) if v in vocab]
                for i in new_items
            ]
            dropped = sum(len(features.get(name, {}).get(i, ())) for i in new_items) - sum(
                map(len, bags)
            )
            if dropped:
                logger.info(
                    "ignored %d feature name(s) of group %r outside the model's vocabulary",
                    dropped,
                    name,
                )
            flat = np.fromiter((f for b in bags for f in b), dtype=np.int64)
            offsets = group.offsets[-1] + np.cumsum([0] + [len(b) for b in bags], dtype=np.int64)
            groups[name] = FeatureGroup(
                group.vocab,
                np.concatenate([group.indices, flat]),
                np.concatenate([group.offsets, offsets[1:]]),
            )
        n_new = len(pairs)
        extended = EvolvingGraph(
            user=np.concatenate([graph.user, user_rows]),
            item=np.concatenate([graph.item, item_rows]),
            rating=np.concatenate(
                [graph.rating, np.zeros(n_new, np.float32)]
            ),  # the model ignores ratings
            timestamp=np.concatenate([graph.timestamp, np.full(n_new, graph.timestamp[-1])]),
            user_ids=np.concatenate(
                [graph.user_ids.astype(object), np.array(new_users, dtype=object)]
            ),
            item_ids=np.concatenate(
                [graph.item_ids.astype(object), np.array(new_items, dtype=object)]
            ),
            item_features=groups,
            name=graph.name,
        )
        graph_input = GraphInput.build(
            extended, np.arange(extended.num_edges), num_users=n_users, num_items=n_items
        )
        user_emb, item_emb = model(graph_input)
        emb = (user_emb if kind == "user" else item_emb).numpy()
        new = new_users if kind == "user" else new_items
        wanted = list(new) if ids is None else _as_keys(ids)
        index = dict(self._index[kind].rows)
        index.update({k: len(self._ids[kind]) + n for n, k in enumerate(new)})
        rows = np.fromiter((index.get(k, -1) for k in wanted), dtype=np.int64, count=len(wanted))
        if (rows < 0).any():
            missing = list(dict.fromkeys(k for k, r in zip(wanted, rows, strict=True) if r < 0))
            raise UnknownIdsError(kind, missing, len(wanted))
        z = emb[rows]
        if not np.isfinite(z).all():
            raise StoreError("the latest model produced NaN or infinite embeddings")
        return NodeEmbeddings(
            kind,
            tuple(wanted),
            j,
            self.transform(z, version=j) if len(z) else np.zeros((0, self.dim(j)), np.float32),
        )

    # ------------------------------------------------------------------ export

    def export(
        self,
        path: str | Path,
        *,
        version: int | None = None,
        engine: str = "single",
        scheduler: str | None = None,
        workers: int | None = None,
        overwrite: bool = False,
    ) -> ExportResult:
        """Write ver-``version`` compatible embeddings of every stored node as Parquet.

        See :func:`bcemb.store.export.export_embeddings` for the arguments.
        """
        from bcemb.store.export import export_embeddings

        return export_embeddings(
            self,
            path,
            version=version,
            engine=engine,
            scheduler=scheduler,
            workers=workers,
            overwrite=overwrite,
        )

    # ------------------------------------------------------------------ monitoring

    def check(self) -> CheckReport:
        """Verify every stored file and measure the chain's alignment error on each version's probes.

        The probe sample of version ``j`` holds real ``z_j`` of a few nodes taken when ``j``
        was published, so the error of ``B_{j+1} o ... o B_k`` can be measured long after
        ``M_j`` is gone. Checksums come first: a file that fails them is reported by name and
        never parsed.

        Returns:
            The report; integrity problems are listed, not raised.
        """
        problems, bad = _verify_files(self.root, self.manifest)
        versions = self._alignment(bad, problems)
        return CheckReport(
            manifest=self.manifest.name,
            latest=self.latest,
            problems=tuple(problems),
            versions=tuple(versions),
            model_check=self.manifest.versions[self.latest].model_check,
        )

    def _alignment(self, bad: set[str], problems: list[str]) -> list[VersionCheck]:
        """The alignment figure of every version whose probe file verified (problems appended).

        The latest embeddings are scanned for NaN and infinite values first (a file can match
        its checksum and still hold them, if it was published so or crafted).
        """
        latest = self.manifest.versions[self.latest]
        for kind in sio.KINDS:
            rel = latest.files[f"{kind}_emb"]
            if rel not in bad:
                bad_rows = _nonfinite_rows(self._emb[kind])
                if bad_rows:
                    problems.append(f"{self.root / rel}: {bad_rows} row(s) hold NaN or infinite values")
        results = []
        for entry in self.manifest.versions:
            rel = entry.files["probes"]
            path = self.root / rel
            if rel in bad:
                continue
            try:
                table = sio.read_table(path)
                probes = sio.table_vectors(table, path)
                if not np.isfinite(probes).all():
                    raise IntegrityError(path, "the probe vectors hold NaN or infinite values")
                kinds = table.column("kind").to_numpy(zero_copy_only=False)
                keys = table.column("id").to_numpy(zero_copy_only=False)
            except (IntegrityError, KeyError, pa.ArrowException) as err:
                problems.append(str(err) if isinstance(err, IntegrityError) else f"{path}: {err}")
                continue
            errors, norms, missing = [], [], 0
            try:
                for kind in sio.KINDS:
                    mask = kinds == kind
                    sub = [str(k) for k in keys[mask]]
                    rows = self._index[kind].get_indexer(sub)
                    found = rows >= 0
                    missing += int((~found).sum())
                    if found.any():
                        z = self.get(
                            [k for k, f in zip(sub, found, strict=True) if f],
                            version=entry.version,
                            kind=kind,
                        ).plain()
                        truth = probes[mask][found].astype(np.float64)
                        if truth.shape[1] != z.shape[1]:
                            raise IntegrityError(
                                path, f"probe vectors of dimension {truth.shape[1]}, expected {z.shape[1]}"
                            )
                        errors.append(np.linalg.norm(z.astype(np.float64) - truth, axis=1))
                        norms.append(np.linalg.norm(truth, axis=1))
            except StoreError as err:
                problems.append(str(err))
                continue
            dist = np.concatenate(errors) if errors else np.zeros(0)
            norm = np.concatenate(norms) if norms else np.zeros(0)
            mean = float(dist.mean()) if len(dist) else float("nan")
            results.append(
                VersionCheck(
                    version=entry.version,
                    dim=entry.dim,
                    num_probes=len(keys),
                    missing=missing,
                    mean_error=mean,
                    max_error=float(dist.max()) if len(dist) else float("nan"),
                    relative_error=mean / float(norm.mean())
                    if len(norm) and norm.mean() > 0
                    else float("nan"),
                )
            )
            if missing:
                problems.append(
                    f"{path}: {missing} probe node(s) are missing from the latest embeddings"
                )
        return results

    def usage(self) -> UsageReport:
        """Disk usage of keep-latest (this store) next to keep-all (every embedding and model)."""
        files = self.manifest.files

        def size(rel: str | None) -> int:
            return files[rel].bytes if rel is not None and rel in files else 0

        def emb_bytes(v: VersionEntry) -> int:
            return sum(size(v.files.get(r)) for r in ("user_emb", "item_emb", "ids")) + sum(
                size(p) for p in v.parts
            )

        latest = self.manifest.versions[self.latest]
        per_raw = (
            emb_bytes(latest) / latest.raw_embedding_bytes if latest.raw_embedding_bytes else 1.0
        )
        rows = tuple(
            VersionUsage(
                version=v.version,
                transform_bytes=size(v.files.get("transform")),
                probe_bytes=sum(  # the published probes and the same-graph probes (monitoring)
                    size(rel) for role, rel in v.files.items() if role == "probes" or role.startswith("same_graph")
                ),
                embedding_bytes=emb_bytes(v)
                if v.embeddings_kept
                else round(v.raw_embedding_bytes * per_raw),
                model_bytes=v.model_bytes,
                embeddings_kept=v.embeddings_kept,
                model_kept=v.model_kept,
            )
            for v in self.manifest.versions
        )
        graph_dir = latest.files.get("graph", "\0") + "/"
        graph_bytes = sum(e.bytes for p, e in files.items() if p.startswith(graph_dir))
        manifest_bytes = sum(p.stat().st_size for p in (self.root / "manifests").glob("*.json"))
        keep_latest = (
            sum(r.transform_bytes + r.probe_bytes for r in rows)
            + rows[-1].embedding_bytes
            + rows[-1].model_bytes
            + graph_bytes
            + manifest_bytes
        )
        keep_all = (
            sum(r.embedding_bytes + r.model_bytes for r in rows) + graph_bytes + manifest_bytes
        )
        return UsageReport(
            versions=rows,
            graph_bytes=graph_bytes,
            manifest_bytes=manifest_bytes,
            stored_bytes=sum(e.bytes for e in files.values()) + manifest_bytes,
            keep_latest_bytes=keep_latest,
            keep_all_bytes=keep_all,
        )

    # ------------------------------------------------------------------ freshness

    def is_stale(self) -> bool:
        """Whether the store has changed (a publish or retirement) since this object opened it."""
        try:
            return read_pointer(self.root) != self._pointer
        except StoreError:
            return True

    def reload(self) -> EmbeddingStore:
        """A new snapshot of the store's current state."""
        return EmbeddingStore(self.root, verify=self.verify)


def _verify_files(root: Path, manifest: Manifest) -> tuple[list[str], set[str]]:
    """Checksum every file of ``manifest``: one problem per bad file, and the bad paths."""
    problems: list[str] = []
    bad: set[str] = set()
    for rel in sorted(manifest.files):
        try:
            sio.verify_file(root, rel, manifest.files[rel].sha256)
        except IntegrityError as err:
            problems.append(str(err))
            bad.add(rel)
    return problems, bad


def _nonfinite_rows(matrix: np.ndarray, chunk: int = 65_536) -> int:
    """Rows of ``matrix`` holding a NaN or an infinity, scanned in chunks (it may be a memory map)."""
    return sum(
        int((~np.isfinite(matrix[i : i + chunk])).any(axis=1).sum())
        for i in range(0, len(matrix), chunk)
    )


def check_store(root: str | Path) -> CheckReport:
    """Check a store that may be damaged: never raises for a corrupt file, names every bad one.

    Order matters: the pointer and the manifest are checked first, then the checksum of every
    file, and only files that passed are parsed (a truncated ``.npy`` or a corrupt Parquet
    file is reported, not read). The alignment figures need the store to open, so they are
    missing when a file needed for serving is bad.

    Raises:
        StoreError: ``root`` is not a store, or an empty one.
    """
    root = Path(root)
    try:
        pointer = read_pointer(root)
        if pointer is None:
            _no_pointer(root)
        assert pointer is not None
        manifest = read_manifest(root, *pointer)
    except (IntegrityError, StoreFormatError) as err:
        return CheckReport(manifest="", latest=-1, problems=(str(err),), versions=())
    except StoreError as err:
        if root.is_dir() and "empty store" not in str(err):
            return CheckReport(manifest="", latest=-1, problems=(str(err),), versions=())
        raise
    problems, bad = _verify_files(root, manifest)
    latest = manifest.versions[manifest.latest]
    needed = {latest.files[r] for r in ("ids", "user_emb", "item_emb")} | {
        v.files["transform"] for v in manifest.versions[1:]
    }
    versions: list[VersionCheck] = []
    if not needed & bad:
        try:
            store = EmbeddingStore(root, verify=False)  # just verified
            if store.manifest.name != manifest.name:
                raise StoreError(f"{root} changed during the check ({store.manifest.name}); run it again")
            versions = store._alignment(bad, problems)
        except StoreError as err:
            problems.append(str(err))
        except Exception as err:  # noqa: BLE001 - a check reports, it never crashes
            problems.append(f"{root}: the store cannot be opened: {type(err).__name__}: {err}")
    return CheckReport(
        manifest=manifest.name,
        latest=manifest.latest,
        problems=tuple(problems),
        versions=tuple(versions),
        model_check=latest.model_check,
    )
