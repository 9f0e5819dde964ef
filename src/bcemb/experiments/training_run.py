"""Train one method's versions 0..K into a run folder, resuming finished versions.

Layout of a run folder (the store publishes from it)::

    RUN/config.json                     resolved configuration, method, seed, library versions
    RUN/graph/                          the evolving graph (bcemb.data.io)
    RUN/version_<k>/model.safetensors   M_k
    RUN/version_<k>/transform.safetensors  B_k (k >= 1)
    RUN/version_<k>/embeddings.safetensors user_emb [U_k, D_k], item_emb [I_k, D_k] on the graph at t_k
    RUN/version_<k>/metrics.json        validation Recall@K, best epoch, seconds
    RUN/version_<k>/curve.csv           the training curve
    RUN/version_<k>/done.json           written last: the version is finished
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path

import torch
from safetensors.torch import save as st_save

from bcemb.experiments.config import ExperimentConfig
from bcemb.experiments.context import ExperimentData
from bcemb.methods import Method, MethodContext, ModelCache, VersionArtifact
from bcemb.models.io import load_model, load_transform, read_tensors, save_module
from bcemb.utils import atomic_write_bytes, environment, read_json, write_json

logger = logging.getLogger(__name__)

__all__ = ["train_method", "load_run_versions", "load_embeddings", "version_dir"]


def version_dir(run: Path, k: int) -> Path:
    """Folder of version ``k`` in a run."""
    return Path(run) / f"version_{k}"


def _save_version(vdir: Path, art: VersionArtifact, data: ExperimentData, method: Method) -> None:
    save_module(vdir / "model.safetensors", art.model, art.model.config.to_dict())
    if art.transform is not None:
        save_module(vdir / "transform.safetensors", art.transform, art.transform.to_config())
    with torch.no_grad():
        user_emb, item_emb = art.model.eval()(data.version(art.k).embed_graph)
    atomic_write_bytes(
        vdir / "embeddings.safetensors",
        st_save({"user_emb": user_emb.contiguous().cpu(), "item_emb": item_emb.contiguous().cpu()}),
    )
    write_json(
        vdir / "metrics.json",
        {
            "k": art.k,
            "method": method.name,
            "recall": {str(k): v for k, v in art.recall.items()},
            "best_epoch": art.best_epoch,
            "seconds": art.seconds,
            "model_key": art.model_key,
            "reused_model": art.reused,
            "dim": art.model.dim,
            "layers": art.model.config.num_layers,
        },
    )
    if art.curve:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(art.curve[0]))
        writer.writeheader()
        writer.writerows(art.curve)
        atomic_write_bytes(vdir / "curve.csv", buf.getvalue().encode())
    write_json(vdir / "done.json", {"k": art.k, "finished": time.time()})


def _load_version(vdir: Path, k: int, device: torch.device) -> VersionArtifact:
    metrics = read_json(vdir / "metrics.json")
    transform = load_transform(vdir / "transform.safetensors").to(device) if k > 0 else None
    return VersionArtifact(
        k=k,
        model=load_model(vdir / "model.safetensors", device=device),
        transform=transform,
        recall={int(kk): v for kk, v in metrics["recall"].items()},
        best_epoch=int(metrics["best_epoch"]),
        seconds=float(metrics.get("seconds", 0.0)),
        model_key=metrics.get("model_key", ""),
        reused=True,
    )


def load_run_versions(run: str | Path, *, device: str | torch.device = "cpu") -> list[VersionArtifact]:
    """Every finished version of a run folder, in order."""
    run = Path(run)
    out = []
    k = 0
    while (version_dir(run, k) / "done.json").is_file():
        out.append(_load_version(version_dir(run, k), k, torch.device(device)))
        k += 1
    return out


def load_embeddings(run: str | Path, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(user_emb, item_emb)`` of version ``k`` of a run."""
    tensors, _ = read_tensors(version_dir(Path(run), k) / "embeddings.safetensors")
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

    Args:
        data: The experiment data (graph, slices, version tensors).
        method: The method instance.
        config: The resolved experiment configuration (saved to ``out/config.json``).
        out: The run folder.
        cache_dir: Where trained models are shared with other methods (default ``out/cache``).
        show_progress: Progress bars (None: on when logging at INFO).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {**config.to_dict(), **method.to_config(), "environment": environment()}
    write_json(out / "config.json", record)
    if not (out / "graph" / "edges.parquet").is_file():
        from bcemb.data.io import save_graph

        save_graph(data.graph, out / "graph")
    ctx = MethodContext(
        data=data.version,
        sizes=config.sizes,
        feature_sizes=data.feature_sizes,
        config=config.train,
        seed=config.seed,
        cache=ModelCache(cache_dir if cache_dir is not None else out / "cache"),
        show_progress=show_progress,
    )
    history: list[VersionArtifact] = []
    for k in range(data.num_versions):
        vdir = version_dir(out, k)
        if (vdir / "done.json").is_file():
            art = _load_version(vdir, k, data.device)
            logger.info("%s v%d: finished earlier, loaded from %s", method.name, k, vdir)
        else:
            art = method.fit_version(k, ctx, history)
            _save_version(vdir, art, data, method)
        history.append(art)
    return history
