"""The store manifest: which versions exist, how they chain, and the checksum of every file.

Each change of the store (a publish, a retirement) writes a new, never rewritten manifest
``manifests/<seq>.json`` and then switches the pointer file ``CURRENT`` to it; readers follow
the pointer, so they see one complete manifest or the next, never a mix. ``CURRENT`` records
the manifest's sha256 and a checksum of itself, so a flipped byte in either is detected and
blamed on the right file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bcemb.store.errors import IntegrityError, MissingPointerError, StoreError, StoreFormatError
from bcemb.store.io import (
    atomic_write_bytes,
    check_relpath,
    resolve_in,
    sha256_file,
    verify_file,
)

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "POINTER",
    "FileEntry",
    "Manifest",
    "VersionEntry",
    "load_manifest",
    "newest_intact_manifest",
    "read_manifest",
    "read_pointer",
    "switch_pointer",
    "utc_now",
    "write_manifest",
]

#: Layout version of the store. A reader refuses manifests newer than this.
FORMAT_VERSION = 1
#: The pointer file, switched last by every change of the store.
POINTER = "CURRENT"
MANIFESTS = "manifests"
#: Every stored data file lives below this folder (manifests may name nothing else).
VERSIONS = "versions"
_MANIFEST_NAME = re.compile(r"^manifests/(\d{6,})\.json$")
_FULL = ("model", "user_emb", "item_emb", "ids")  # what keep-latest drops from older versions


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string (seconds)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class FileEntry:
    """A stored file's checksum and size.

    Attributes:
        sha256: Hex sha256 of the content.
        bytes: Size in bytes.
    """

    sha256: str
    bytes: int


@dataclass(frozen=True)
class VersionEntry:
    """One embedding version as the store knows it.

    Attributes:
        version: ``k``.
        parent: The version ``B_k`` maps into (``k - 1``); None for version 0.
        dim: ``D_k``.
        num_users: Users embedded by ``M_k`` (rows of its user embeddings).
        num_items: Items embedded by ``M_k``.
        method: Training method of the run (for example ``"bc-aligner"``).
        lam: Alignment weight lambda of the run (None when the run has none).
        created: When the version entered the store (ISO-8601 UTC).
        transform: ``B_k.to_config()`` (None for version 0).
        files: Role -> path relative to the store root. Roles: ``transform``, ``probes``
            (always kept), ``model``, ``graph`` (latest only), ``user_emb``, ``item_emb``,
            ``ids`` (while the embeddings are kept).
        parts: Parquet partitions of the kept embeddings, in row order (users, then items).
        num_probes: Nodes in the probe sample of the real ``z_k``.
        model_bytes: Size of ``M_k``'s file, recorded even after the model is gone.
        raw_embedding_bytes: ``4 * (num_users + num_items) * dim``.
        metrics: The run's ``metrics.json`` of the version.
        source: Where the version came from (run folder and version folder).
        model_check: For the latest version, how closely the stored model reproduces the
            stored embeddings on the stored graph snapshot.
    """

    version: int
    parent: int | None
    dim: int
    num_users: int
    num_items: int
    method: str
    lam: float | None
    created: str
    transform: dict[str, Any] | None
    files: dict[str, str]
    parts: tuple[str, ...] = ()
    num_probes: int = 0
    model_bytes: int = 0
    raw_embedding_bytes: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    model_check: dict[str, Any] | None = None

    @property
    def embeddings_kept(self) -> bool:
        """Whether the full embeddings of this version are stored."""
        return "user_emb" in self.files

    @property
    def model_kept(self) -> bool:
        """Whether ``M_k`` is stored."""
        return "model" in self.files

    def superseded(self, *, keep_all: bool) -> VersionEntry:
        """This entry once a newer version is the latest.

        The graph snapshot is only needed for the latest model. Keep-latest also drops the
        model and the embeddings; keep-all (the comparison) keeps both.
        """
        drop = {"graph"} if keep_all else {"graph", *_FULL}
        return self._without(drop)

    def retired(self) -> VersionEntry:
        """This entry with only its transform and probes left (see :func:`retire`)."""
        return self._without({"graph", *_FULL})

    def _without(self, roles: set[str]) -> VersionEntry:
        files = {role: p for role, p in self.files.items() if role not in roles}
        return replace(self, files=files, parts=self.parts if "user_emb" in files else ())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["parts"] = list(self.parts)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> VersionEntry:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: A field is missing, unknown or of the wrong type (a crafted or
                damaged manifest must fail here, not as a ``TypeError`` deep in a reader).
        """
        if not isinstance(d, dict):
            raise ValueError(f"a version entry is {type(d).__name__}, not an object")
        d = dict(d)
        unknown = set(d) - set(_VERSION_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} in a version entry")
        for name, (kind, required) in _VERSION_FIELDS.items():
            if name not in d:
                if required:
                    raise ValueError(f"a version entry lacks {name!r}")
                continue
            if not _is(d[name], kind):
                raise ValueError(f"{name!r} of a version entry is {d[name]!r}, expected {kind}")
        files = d["files"]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ValueError("the files of a version entry must map roles to path strings")
        if not all(isinstance(p, str) for p in d.get("parts", ())):
            raise ValueError("the parts of a version entry must be path strings")
        if d["transform"] is not None and not isinstance(d["transform"].get("kind"), str):
            raise ValueError("the transform of a version entry has no 'kind'")
        if "probes" not in files:
            raise ValueError(f"version {d['version']} lists no probes")
        if d["version"] > 0 and "transform" not in files:
            raise ValueError(f"version {d['version']} lists no transform")
        d["parts"] = tuple(d.get("parts", ()))
        return VersionEntry(**d)


def _is(value: Any, kind: str) -> bool:
    """Whether a JSON value has the type ``kind`` names (``int`` excludes booleans)."""
    if value is None:
        return kind.endswith("?")
    kind = kind.rstrip("?")
    if kind in ("int", "count"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return ok and (kind == "int" or value >= 0)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, {"str": str, "object": dict, "list": list}[kind])


#: Field -> (JSON type, required) of a version entry; ``?`` allows null, ``count`` is an int >= 0.
_VERSION_FIELDS: dict[str, tuple[str, bool]] = {
    "version": ("count", True),
    "parent": ("count?", True),
    "dim": ("count", True),
    "num_users": ("count", True),
    "num_items": ("count", True),
    "method": ("str", True),
    "lam": ("number?", True),
    "created": ("str", True),
    "transform": ("object?", True),
    "files": ("object", True),
    "parts": ("list", False),
    "num_probes": ("count", False),
    "model_bytes": ("count", False),
    "raw_embedding_bytes": ("count", False),
    "metrics": ("object", False),
    "source": ("object", False),
    "model_check": ("object?", False),
}

#: Top-level field -> JSON type of a manifest (``run`` and ``previous`` are checked apart).
_MANIFEST_FIELDS: dict[str, str] = {
    "seq": "count",
    "created": "str",
    "event": "str",
    "latest": "count",
    "versions": "list",
    "files": "object",
    "run": "object?",
}


@dataclass(frozen=True)
class Manifest:
    """The complete description of the store after one change.

    Attributes:
        seq: Sequence number of the change (0, 1, ...).
        created: When the change was made (ISO-8601 UTC).
        event: ``"publish"`` or ``"retire"``.
        latest: ``k``, the version whose embeddings and model are served.
        versions: Every version ``0..k``, oldest first.
        files: Path (relative to the store root) -> checksum, for every file the store holds.
        run: The publishing run's ``config.json`` and folder.
        previous: The manifest this one replaced (None for the first).
        format_version: :data:`FORMAT_VERSION` at writing time.
    """

    seq: int
    created: str
    event: str
    latest: int
    versions: tuple[VersionEntry, ...]
    files: dict[str, FileEntry]
    run: dict[str, Any] = field(default_factory=dict)
    previous: str | None = None
    format_version: int = FORMAT_VERSION

    def version(self, k: int) -> VersionEntry:
        """The entry of version ``k``."""
        return self.versions[k]

    @property
    def name(self) -> str:
        """The manifest's path relative to the store root."""
        return f"{MANIFESTS}/{self.seq:06d}.json"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the format version first, so that it is easy to find)."""
        return {
            "format_version": self.format_version,
            "seq": self.seq,
            "created": self.created,
            "event": self.event,
            "latest": self.latest,
            "versions": [v.to_dict() for v in self.versions],
            "files": {p: asdict(e) for p, e in sorted(self.files.items())},
            "run": self.run,
            "previous": self.previous,
        }

    @staticmethod
    def from_dict(d: Any, *, path: Path | str = "<manifest>") -> Manifest:
        """Parse and check a manifest; a newer format or a malformed one fails loudly."""
        if not isinstance(d, dict):
            raise IntegrityError(path, "the manifest is not a JSON object")
        fmt = d.get("format_version")
        if not isinstance(fmt, int) or fmt < 1:
            raise StoreFormatError(f"{path}: missing or invalid format_version {fmt!r}")
        if fmt > FORMAT_VERSION:
            raise StoreFormatError(
                f"{path}: store format {fmt} is newer than this bcemb supports ({FORMAT_VERSION}); "
                "upgrade bcemb to read this store"
            )
        try:
            for key, kind in _MANIFEST_FIELDS.items():
                if key not in d or not _is(d[key], kind):
                    raise ValueError(f"{key!r} is {d.get(key)!r}, expected {kind}")
            for p, e in d["files"].items():
                if (
                    not isinstance(e, dict)
                    or not isinstance(e.get("sha256"), str)
                    or not _is(e.get("bytes"), "count")
                ):
                    raise ValueError(f"the checksum entry of {p!r} is {e!r}")
            versions = tuple(VersionEntry.from_dict(v) for v in d["versions"])
            m = Manifest(
                seq=int(d["seq"]),
                created=str(d["created"]),
                event=str(d["event"]),
                latest=int(d["latest"]),
                versions=versions,
                files={
                    p: FileEntry(str(e["sha256"]), int(e["bytes"])) for p, e in d["files"].items()
                },
                run=dict(d.get("run") or {}),
                previous=d.get("previous"),
                format_version=fmt,
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise IntegrityError(path, f"malformed manifest: {err}") from err
        _check_paths(m, path)
        if [v.version for v in m.versions] != list(range(len(m.versions))) or m.latest != len(
            m.versions
        ) - 1:
            raise IntegrityError(path, "malformed manifest: versions must be 0..latest in order")
        if any(v.parent != (v.version - 1 if v.version else None) for v in m.versions):
            raise IntegrityError(path, "malformed manifest: each version's parent must be the one before")
        served = ("ids", "user_emb", "item_emb")  # a version without a model (adapt) has no "model"
        lacking = [r for r in served if r not in m.versions[m.latest].files]
        if lacking:
            raise IntegrityError(path, f"malformed manifest: the latest version lists no {lacking}")
        for v in m.versions:
            for rel in (*v.files.values(), *v.parts):
                if v.files.get("graph") == rel:
                    continue  # a folder; its files are listed one by one
                if rel not in m.files:
                    raise IntegrityError(path, f"malformed manifest: {rel} has no checksum")
        return m


def _check_paths(m: Manifest, path: Path | str) -> None:
    """Every path a manifest names must be a plain relative path below ``versions/``.

    A crafted manifest could otherwise make the store open ``/etc/passwd``, serve vectors
    from ``../outside/*.npy`` or delete files outside the store (symlinks are checked where
    the files are opened, see :func:`bcemb.store.io.resolve_in`).
    """
    named = [*m.files]
    for v in m.versions:
        if not isinstance(v.files, dict):
            raise IntegrityError(path, f"malformed manifest: files of version {v.version} is not an object")
        named += [*v.files.values(), *v.parts]
    for rel in named:
        try:
            check_relpath(rel)
        except ValueError as err:
            raise IntegrityError(path, f"malformed manifest: {err}") from None
        if not rel.startswith(VERSIONS + "/"):
            raise IntegrityError(
                path, f"malformed manifest: path {rel!r} is outside the store's {VERSIONS}/ folder"
            )
    if m.previous is not None and (
        not isinstance(m.previous, str) or not _MANIFEST_NAME.match(m.previous)
    ):
        raise IntegrityError(path, f"malformed manifest: previous {m.previous!r} is not a manifest name")


def _pointer_check(manifest: str, sha256: str) -> str:
    return hashlib.sha256(f"{manifest}\n{sha256}".encode()).hexdigest()[:16]


def read_pointer(root: Path) -> tuple[str, str] | None:
    """``(manifest path, its sha256)`` from ``CURRENT``, or None for an empty store.

    Raises:
        IntegrityError: ``CURRENT`` is corrupt (names it).
        StoreFormatError: ``CURRENT`` was written by a newer format.
    """
    path = root / POINTER
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:  # for example another user's store written without read access
        raise StoreError(f"{path}: cannot read the store pointer: {err.strerror}") from None
    try:
        d = json.loads(raw)
        fmt, manifest, sha, check = d["format_version"], d["manifest"], d["sha256"], d["check"]
    except (ValueError, KeyError, TypeError, RecursionError) as err:  # ValueError: bad JSON, UTF-8
        raise IntegrityError(path, f"corrupt store pointer: {err!r}") from None
    if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
        raise StoreFormatError(
            f"{path}: store format {fmt!r} is newer than this bcemb supports ({FORMAT_VERSION}); upgrade bcemb"
        )
    if (
        not isinstance(manifest, str)
        or not isinstance(sha, str)
        or _pointer_check(manifest, sha) != check
    ):
        raise IntegrityError(
            path, "corrupt store pointer: its content does not match its own checksum"
        )
    if not _MANIFEST_NAME.match(manifest):
        raise IntegrityError(path, f"store pointer names {manifest!r}, not a manifests/<seq>.json file")
    return manifest, sha


def read_manifest(root: Path, rel: str, sha256: str | None = None) -> Manifest:
    """Read the manifest at ``root/rel``, checking it against ``sha256`` when given."""
    if not _MANIFEST_NAME.match(rel):
        raise IntegrityError(root / rel, "not a manifests/<seq>.json file")
    path = resolve_in(root, rel)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(path, "missing manifest") from None
    except OSError as err:
        raise IntegrityError(path, f"cannot read the manifest: {err}") from None
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise IntegrityError(path, "checksum mismatch: the manifest is corrupt or was modified")
    try:
        d = json.loads(raw)
    except (ValueError, RecursionError) as err:  # ValueError: bad JSON or UTF-8
        raise IntegrityError(path, f"corrupt manifest: {err}") from None
    return Manifest.from_dict(d, path=path)


def manifest_names(root: Path) -> list[str]:
    """The manifests under ``root/manifests``, newest (highest sequence number) first."""
    folder = root / MANIFESTS
    if not folder.is_dir():
        return []
    found = [f"{MANIFESTS}/{p.name}" for p in folder.iterdir()]
    named = [(int(m.group(1)), rel) for rel in found if (m := _MANIFEST_NAME.match(rel))]
    return [rel for _, rel in sorted(named, reverse=True)]


def load_manifest(root: Path) -> Manifest | None:
    """The current manifest (following ``CURRENT``), or None for an empty store.

    Raises:
        MissingPointerError: There are manifests but no ``CURRENT``: the store is not empty
            (a deleted pointer, or a first publish interrupted just before its commit), so it
            must not be treated as such; :func:`bcemb.store.collect_garbage` restores it.
    """
    pointer = read_pointer(root)
    if pointer is None:
        names = manifest_names(root)
        if names:
            raise MissingPointerError(
                root / POINTER,
                f"missing store pointer, but the store holds {len(names)} manifest(s) (newest "
                f"{names[0]}); it is not empty. `bcemb store gc` restores the pointer to the newest "
                "manifest whose files are all intact",
            )
        return None
    return read_manifest(root, *pointer)


def newest_intact_manifest(root: Path) -> tuple[Manifest, str, list[str]]:
    """The newest manifest that parses and whose every file matches its checksum.

    Used to restore a missing ``CURRENT``: that state was complete on disk (a manifest is only
    written once all its files are), so pointing at it loses nothing.

    Returns:
        The manifest, its sha256, and why each newer manifest was passed over.

    Raises:
        StoreError: No manifest is intact (the reasons are listed).
    """
    skipped: list[str] = []
    for rel in manifest_names(root):
        try:
            manifest = read_manifest(root, rel)
            for f, entry in sorted(manifest.files.items()):
                verify_file(root, f, entry.sha256)
        except (IntegrityError, StoreFormatError) as err:
            skipped.append(str(err))
            continue
        return manifest, sha256_file(root / rel), skipped
    raise StoreError(
        f"{root}: no {POINTER} and none of its manifests is intact, so the store's state cannot be "
        "restored; nothing was changed or deleted. Problems: " + "; ".join(skipped or ["no manifests"])
    )


def write_manifest(root: Path, manifest: Manifest) -> str:
    """Write ``manifest`` as a new file; returns its sha256. Does not switch the pointer."""
    path = root / manifest.name
    if path.exists():
        # Only a manifest never pointed to (an interrupted change) can be here: the caller
        # holds the write lock and the pointer names an older sequence number.
        pointed = read_pointer(root)
        if pointed is not None and pointed[0] == manifest.name:
            raise StoreError(f"refusing to overwrite the current manifest {path}")
        path.unlink()
    data = (json.dumps(manifest.to_dict(), indent=1) + "\n").encode()
    # Written aside and renamed: a kill mid-write must not leave a torn manifest, which
    # would make a store without CURRENT impossible to restore (see newest_intact_manifest).
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def switch_pointer(root: Path, manifest: Manifest, sha256: str) -> None:
    """Point ``CURRENT`` at ``manifest``: the single atomic step that commits a change."""
    body = {
        "format_version": FORMAT_VERSION,
        "manifest": manifest.name,
        "sha256": sha256,
        "check": _pointer_check(manifest.name, sha256),
    }
    atomic_write_bytes(root / POINTER, (json.dumps(body) + "\n").encode())
    logger.debug("store %s now at %s", root, manifest.name)
