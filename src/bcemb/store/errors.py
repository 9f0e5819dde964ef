"""Errors of the embedding store. Each names what is wrong (a file, ids, a version)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "IntegrityError",
    "MissingPointerError",
    "PublishError",
    "StoreError",
    "StoreFormatError",
    "StoreUnavailableError",
    "UnknownIdsError",
    "UnknownVersionError",
]


class StoreError(Exception):
    """Base class of every store error."""


class IntegrityError(StoreError):
    """A stored file is missing, corrupt or does not match its checksum.

    Attributes:
        path: The file at fault.
    """

    def __init__(self, path: object, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)


class MissingPointerError(IntegrityError):
    """The store holds manifests but no ``CURRENT`` pointer: not empty, and not readable as is.

    Changes of the store (publish, retire, gc) restore the pointer from the newest intact
    manifest; readers refuse until then.
    """


class StoreFormatError(StoreError):
    """The store was written in a format this bcemb cannot read (for example a newer one)."""


class UnknownVersionError(StoreError, KeyError):
    """A version the store does not have.

    Attributes:
        version: The version asked for.
        available: The versions the store has.
    """

    def __init__(self, version: object, available: Sequence[int]) -> None:
        span = f"{min(available)}..{max(available)}" if available else "none"
        super().__init__(f"unknown version {version!r}; the store has versions {span}")
        self.version = version
        self.available = list(available)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _clip(text: object, limit: int = 64) -> str:
    """An id cut for messages: a 4 MB id must not make a 4 MB error (the id stays on ``missing``)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class UnknownIdsError(StoreError, KeyError):
    """Ids the store does not know.

    Attributes:
        kind: ``"user"`` or ``"item"``.
        missing: The unknown ids (all of them).
        total: How many ids were asked for.
    """

    def __init__(self, kind: str, missing: Sequence[str], total: int) -> None:
        shown = ", ".join(repr(_clip(m)) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        super().__init__(f"unknown {kind} ids ({len(missing)} of {total}): {shown}{more}")
        self.kind = kind
        self.missing = list(missing)
        self.total = total

    def __str__(self) -> str:
        return str(self.args[0])


class PublishError(StoreError):
    """A training run cannot be published (unfinished, inconsistent, or not a continuation)."""


class StoreUnavailableError(StoreError):
    """The store cannot answer right now (a served file changed under us, a reload failed).

    The HTTP service answers 503 with this message; nothing wrong is served meanwhile.

    Attributes:
        path: The file at fault, if one is.
    """

    def __init__(self, message: str, path: object | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
