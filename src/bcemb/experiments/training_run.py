"""Train one method's versions 0..K into a run folder, resuming finished versions.

The folder's layout is owned by :mod:`bcemb.run_folder` (the store publishes from it).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from bcemb import run_folder as rf
from bcemb.experiments.config import ExperimentConfig
from bcemb.experiments.context import ExperimentData
from bcemb.methods import Method, ModelCache, VersionArtifact
from bcemb.models.io import load_model, load_transform, save_model, save_module
from bcemb.utils import environment

logger = logging.getLogger(__name__)

__all__ = ["train_method", "load_run_versions", "load_embeddings", "version_dir"]

version_dir = rf.version_dir


def _save_version(vdir: Path, art: VersionArtifact, data: ExperimentData, method: Method) -> None:
    save_model(vdir / rf.MODEL, art.model)
    if art.transform is not None:
        save_module(vdir / rf.TRANSFORM, art.transform, art.transform.to_config())
    with torch.no_grad():
        user_emb, item_emb = art.model.eval()(data.version(art.k).embed_graph)
    rf.write_embeddings(vdir, {"user_emb": user_emb, "item_emb": item_emb})
    rf.write_version_record(
        vdir,
        {
            "k": art.k,
            "method": method.name,
            "metrics": art.metrics,
            "recall": {str(k): v for k, v in art.recall.items()},
            "best_epoch": art.best_epoch,
            "seconds": art.seconds,
            "model_key": art.model_key,
            "reused_model": art.reused,
            "dim": art.model.dim,
            "model": art.model.to_config(),
        },
        art.curve,
    )
    rf.mark_done(vdir, art.k)


def _load_version(run: Path, k: int, device: torch.device) -> VersionArtifact:
    vdir = rf.version_dir(run, k)
    metrics = rf.read_metrics(run, k)
    transform = load_transform(vdir / rf.TRANSFORM).to(device) if k > 0 else None
    values = metrics.get("metrics") or {f"recall@{kk}": v for kk, v in metrics.get("recall", {}).items()}
    return VersionArtifact(
        k=k,
        model=load_model(vdir / rf.MODEL, device=device),
        transform=transform,
        metrics={str(n): float(v) for n, v in values.items()},
        best_epoch=int(metrics.get("best_epoch", -1)),  # -1: not recorded (written by other tools)
        seconds=float(metrics.get("seconds", 0.0)),
        model_key=metrics.get("model_key", ""),
        reused=True,
    )


def load_run_versions(run: str | Path, *, device: str | torch.device = "cpu") -> list[VersionArtifact]:
    """Every finished version of a run folder, in order."""
    return [_load_version(Path(run), k, torch.device(device)) for k in rf.finished_versions(run)]


def load_embeddings(run: str | Path, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(user_emb, item_emb)`` of version ``k`` of a run."""
    tensors = rf.read_embeddings(run, k)
    return tensors["user_emb"], tensors["item_emb"]


def train_method(
    data: ExperimentData,
    method: Method,
    config: ExperimentConfig,
    out: str | Path,
    *,
    cache_dir: str | Path | None = None,
    show_progress: bool | None = None,
) -> list[VersionArtifact]:
    """Train (or resume) versions ``0..K`` of ``method`` and write them to ``out``.

    A folder made by another configuration is refused (:class:`bcemb.run_folder.RunFolderError`),
    and so is a second process training into the same folder.

    Args:
        data: The experiment data (graph, slices, version tensors).
        method: The method instance.
        config: The resolved experiment configuration (saved to ``out/config.json``).
        out: The run folder.
        cache_dir: Where trained models are shared with other methods (default ``out/cache``).
        show_progress: Progress bars (None: on when logging at INFO).
    """
    out = Path(out)
    with rf.lock(out):
        rf.claim(out, {**config.to_dict(), **method.to_config(), "environment": environment()})
        if not (out / "graph" / "edges.parquet").is_file():
            from bcemb.data.io import save_graph

            save_graph(data.graph, out / "graph")
        ctx = data.method_context(
            config,
            cache=ModelCache(cache_dir if cache_dir is not None else out / "cache", config.model_fingerprint()),
            show_progress=show_progress,
        )
        history: list[VersionArtifact] = []
        for k in range(data.num_versions):
            vdir = rf.version_dir(out, k)
            if (vdir / rf.DONE).is_file():
                art = _load_version(out, k, data.device)
                logger.info("%s v%d: finished earlier, loaded from %s", method.name, k, vdir)
            else:
                art = method.fit_version(k, ctx, history)
                _save_version(vdir, art, data, method)
            history.append(art)
    return history
