"""bcemb: backward compatible embeddings (Hu et al., KDD 2022).

The main entry points, imported lazily so that ``import bcemb`` stays cheap:

* :func:`run_benchmark` — every method, the consumers and the three metrics.
* :func:`train_method` — one method's versions 0..K into a run folder.
* :func:`profile_config` — an :class:`ExperimentConfig` from the ``quick`` or ``paper`` profile.
* :class:`EmbeddingStore` / :func:`publish` — the keep-latest store.
* :class:`TransformChain` — ``B_{j+1} o ... o B_k`` on any tensors.
* :class:`Aligner` / :func:`fit` — BC-Aligner inside your own PyTorch training loop.
* :data:`MODELS` — register your own embedding model (safetensors I/O, the store).
"""

from __future__ import annotations

import importlib
from typing import Any

from bcemb.version import __version__

_LAZY = {
    "run_benchmark": "bcemb.experiments.benchmark",
    "train_method": "bcemb.experiments.training_run",
    "profile_config": "bcemb.experiments.config",
    "ExperimentConfig": "bcemb.experiments.config",
    "EmbeddingStore": "bcemb.store",
    "publish": "bcemb.store",
    "TransformChain": "bcemb.transforms",
    "Aligner": "bcemb.training",
    "fit": "bcemb.training",
    "MODELS": "bcemb.models",
    "build_method": "bcemb.methods",
    "load_dataset": "bcemb.data",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bcemb' has no attribute {name!r}")
