"""The keep-latest embedding store: the latest embeddings and model, the chain of backward
transforms and a probe sample of every version; any old version is served on the fly.

Example:
    >>> from bcemb.store import EmbeddingStore, publish
    >>> publish("runs/ml-100k/bc-aligner", "store")
    >>> store = EmbeddingStore("store")
    >>> store.get(["196"], kind="user", version=0).shape
    (1, 64)
"""

from bcemb.store.errors import (
    IntegrityError,
    PublishError,
    StoreError,
    StoreFormatError,
    UnknownIdsError,
    UnknownVersionError,
)
from bcemb.store.export import ENGINES, ExportResult, export_embeddings
from bcemb.store.manifest import FORMAT_VERSION, FileEntry, Manifest, VersionEntry, load_manifest
from bcemb.store.publish import collect_garbage, finished_versions, publish, retire
from bcemb.store.store import (
    CheckReport,
    EmbeddingStore,
    NodeEmbeddings,
    UsageReport,
    VersionCheck,
    VersionUsage,
    compose_matrix,
)

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
