"""The keep-latest embedding store: the latest embeddings and model, the chain of backward
transforms and a probe sample of every version; any old version is served on the fly.

Example:
    >>> from bcemb.store import EmbeddingStore, publish
    >>> publish("runs/ml-100k/bc-aligner", "store")
    >>> store = EmbeddingStore("store")
    >>> store.get(["196"], kind="user", version=0).shape
    (1, 64)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# Imported on first use, so that ``bcemb --help`` and the errors stay cheap to import.
_LAZY = {
    **dict.fromkeys(
        ["IntegrityError", "PublishError", "StoreError", "StoreFormatError", "StoreUnavailableError",
         "UnknownIdsError", "UnknownVersionError"], "bcemb.store.errors"),
    **dict.fromkeys(["ENGINES", "ExportResult", "export_embeddings"], "bcemb.store.export"),
    **dict.fromkeys(["FORMAT_VERSION", "FileEntry", "Manifest", "VersionEntry", "load_manifest"], "bcemb.store.manifest"),
    **dict.fromkeys(["collect_garbage", "finished_versions", "publish", "retire"], "bcemb.store.publish"),
    **dict.fromkeys(["CheckReport", "EmbeddingStore", "NodeEmbeddings", "UsageReport", "VersionCheck",
                     "VersionUsage", "compose_matrix"], "bcemb.store.store"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # cached: the next lookup is a plain attribute
        return value
    raise AttributeError(f"module 'bcemb.store' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps ``bcemb.store.publish`` the function: importing the submodule of the same name
    would otherwise bind the module there (``sys.modules`` still holds the module)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "ENGINES",
    "FORMAT_VERSION",
    "CheckReport",
    "EmbeddingStore",
    "ExportResult",
    "FileEntry",
    "IntegrityError",
    "Manifest",
    "NodeEmbeddings",
    "PublishError",
    "StoreError",
    "StoreFormatError",
    "StoreUnavailableError",
    "UnknownIdsError",
    "UnknownVersionError",
    "UsageReport",
    "VersionCheck",
    "VersionEntry",
    "VersionUsage",
    "collect_garbage",
    "compose_matrix",
    "export_embeddings",
    "finished_versions",
    "load_manifest",
    "publish",
    "retire",
]
