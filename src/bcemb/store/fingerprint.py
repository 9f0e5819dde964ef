"""Provenance of vectors: the fingerprint of an embedding space, and arrays that carry it.

A ver-j vector served by a store at latest version ``k`` is ``B_{j+1} o ... o B_k (M_k(x))``.
Its *space* is therefore fixed by three things: the version ``j``, the latest model ``M_k``
and the chain links ``B_{j+1} .. B_k``. The fingerprint hashes exactly those (by the sha256 of
their files, which the manifest already records), so

- two vectors with the same fingerprint come from the same function and can be compared;
- a publish changes every version's fingerprint (a new ``M_k`` and a new link), so a client
  holding vectors of an older publish learns that they are of another space;
- the fingerprint of a candidate run's space can be computed from the run folder before
  anything is published (the store copies the files byte for byte).

:class:`SpaceVectors` is a NumPy array that carries its space; concatenating, stacking,
comparing or combining arrays of different spaces raises :class:`SpaceMismatchError`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bcemb.store import io as sio
from bcemb.store.errors import StoreError

if TYPE_CHECKING:
    from bcemb.store.manifest import Manifest

__all__ = [
    "SpaceFingerprint",
    "SpaceMismatchError",
    "SpaceVectors",
    "manifest_space",
    "parse_space",
    "run_space",
    "space_of",
]

_SCHEME = "bcemb-space/1"
_PATTERN = re.compile(r"^v(\d+)-([0-9a-f]{16})$")


class SpaceMismatchError(StoreError, ValueError):
    """Vectors of different embedding spaces were combined (for example ver-0 and ver-3)."""


@dataclass(frozen=True)
class SpaceFingerprint:
    """The identity of the space of ver-``version`` vectors served from one latest model.

    Attributes:
        version: ``j``.
        model: sha256 of the latest model's file (``M_k``).
        links: sha256 of ``B_{j+1} .. B_k``'s files, in that order (empty for ``j = k``).
    """

    version: int
    model: str
    links: tuple[str, ...] = ()

    @property
    def latest(self) -> int:
        """``k``, the version of the model the vectors come from."""
        return self.version + len(self.links)

    @property
    def digest(self) -> str:
        """16 hex digits of the sha256 of the version, the model and the links."""
        text = "\n".join([_SCHEME, str(self.version), self.model, *self.links])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __str__(self) -> str:
        return f"v{self.version}-{self.digest}"


def parse_space(text: str) -> tuple[int, str]:
    """``(version, digest)`` of a fingerprint string such as ``v0-3f2a9c1b2d4e5f60``."""
    m = _PATTERN.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(
            f"not an embedding-space fingerprint: {text!r} (expected v<version>-<16 hex digits>)"
        )
    return int(m.group(1)), m.group(2)


def manifest_space(manifest: Manifest, version: int) -> SpaceFingerprint:
    """The fingerprint of ver-``version`` vectors served by a store in the state ``manifest``."""
    if not 0 <= version <= manifest.latest:
        raise StoreError(f"unknown version {version}; the store has versions 0..{manifest.latest}")
    files = manifest.files
    latest = manifest.versions[manifest.latest]
    if "model" in latest.files:
        model = files[latest.files["model"]].sha256
    else:  # a version of vectors only (bcemb adapt): its vectors identify the space
        model = hashlib.sha256(
            "".join(files[latest.files[r]].sha256 for r in ("user_emb", "item_emb")).encode()
        ).hexdigest()
    links = tuple(
        files[manifest.versions[i].files["transform"]].sha256
        for i in range(version + 1, manifest.latest + 1)
    )
    return SpaceFingerprint(version, model, links)


def run_space(run_dir: str | Path, version: int, latest: int) -> SpaceFingerprint:
    """The fingerprint a store would give ver-``version`` vectors after publishing ``latest``
    of the training run ``run_dir`` (from the sha256 of the run's files)."""
    run = Path(run_dir)
    if not 0 <= version <= latest:
        raise ValueError(f"version {version} is not within 0..{latest}")
    model = sio.sha256_file(run / f"version_{latest}" / "model.safetensors")
    links = tuple(
        sio.sha256_file(run / f"version_{i}" / "transform.safetensors")
        for i in range(version + 1, latest + 1)
    )
    return SpaceFingerprint(version, model, links)


def _spaces(obj: Any) -> Iterator[str]:
    if isinstance(obj, SpaceVectors):
        if obj.space is not None:
            yield obj.space
    elif isinstance(obj, list | tuple):
        for o in obj:
            yield from _spaces(o)


def _check_one_space(what: str, *objs: Any) -> None:
    spaces = sorted(set(_spaces(list(objs))))
    if len(spaces) > 1:
        raise SpaceMismatchError(
            f"{what} of vectors from different embedding spaces {spaces}: vectors of different "
            "versions (or of one version before and after a publish) are not comparable; fetch "
            "them all from one version of the store"
        )


class SpaceVectors(np.ndarray):
    """A float matrix of embeddings that knows its space (a :class:`numpy.ndarray`).

    Everything an array does works as before; combining two of them from different spaces
    (``np.concatenate``, ``np.vstack``, ``==``, ``-``, ``np.allclose``, ...) raises
    :class:`SpaceMismatchError`. Arithmetic results are plain arrays (a product with a
    matrix is no longer in the space); slices keep the space.

    Attributes:
        space: The fingerprint string (``v<j>-<digest>``).
        version: ``j``.
    """

    space: str | None
    version: int | None

    def __new__(cls, array: Any, space: str | None, version: int | None) -> SpaceVectors:
        obj = np.asarray(array).view(cls)
        obj.space = space
        obj.version = version
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.space = getattr(obj, "space", None)
        self.version = getattr(obj, "version", None)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out", ())
        _check_one_space(f"{ufunc.__name__}", *inputs, *out)
        plain = [x.view(np.ndarray) if isinstance(x, SpaceVectors) else x for x in inputs]
        if out:
            kwargs["out"] = tuple(
                o.view(np.ndarray) if isinstance(o, SpaceVectors) else o for o in out
            )
        return getattr(ufunc, method)(*plain, **kwargs)

    def __array_function__(
        self, func: Any, types: Sequence[type], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any:
        _check_one_space(getattr(func, "__name__", "combining"), *args, *kwargs.values())
        result = super().__array_function__(func, types, args, kwargs)
        if func in _JOINS and isinstance(result, np.ndarray):
            # Rows of one space joined are still in that space.
            return SpaceVectors(result.view(np.ndarray), self.space, self.version)
        return result

    def __reduce__(self) -> Any:  # copies and pickling of the array keep the tag
        state = super().__reduce__()
        return (state[0], state[1], (*state[2], self.space, self.version))  # type: ignore[index]

    def __setstate__(self, state: Any) -> None:
        *base, self.space, self.version = state
        super().__setstate__(tuple(base))

    def __repr__(self) -> str:
        return f"SpaceVectors({np.asarray(self)!r}, space={self.space!r})"

    def plain(self) -> np.ndarray:
        """The same data as a plain array (the tag dropped, no copy)."""
        return self.view(np.ndarray)


_JOINS = {np.concatenate, np.vstack, np.stack}


def space_of(vectors: Any) -> str | None:
    """The space fingerprint an array carries, or None for an untagged array."""
    return vectors.space if isinstance(vectors, SpaceVectors) else None
