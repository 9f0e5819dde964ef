"""Fake training-run folders for tests and benchmarks (no training: random weights).

Not public API. The folder follows the contract that :func:`bcemb.store.publish` reads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bcemb.data.datasets.synthetic import make_synthetic
from bcemb.data.graph import EvolvingGraph
from bcemb.data.io import save_graph
from bcemb.data.splits import TimeSlices
from bcemb.models.graph_input import GraphInput
from bcemb import run_folder
from bcemb.models.io import save_model, save_module
from bcemb.models.sage import SageConfig, SageEncoder
from bcemb.transforms import TRANSFORMS, BackwardTransform, TransformChain

logger = logging.getLogger(__name__)

__all__ = ["default_times", "plain_graph", "tiny_graph", "write_fake_run"]


def tiny_graph(seed: int = 0) -> EvolvingGraph:
    """A small synthetic graph with item features (about 60 users, 80 items, 600 edges)."""
    return make_synthetic(num_users=60, num_items=80, num_edges=800, seed=seed)


def plain_graph(num_users: int, num_items: int) -> EvolvingGraph:
    """A featureless graph of any size, built in linear time (for benchmarks).

    Edge ``e`` joins user ``e mod U`` and item ``e mod I`` at time ``e``; ids are strings.
    """
    n = 2 * max(num_users, num_items)
    e = np.arange(n)
    return EvolvingGraph(
        user=e % num_users,
        item=e % num_items,
        rating=np.full(n, 5.0, np.float32),
        timestamp=e.astype(np.int64),
        user_ids=np.array([f"u{i}" for i in range(num_users)]),
        item_ids=np.array([f"i{i}" for i in range(num_items)]),
        name="plain",
    )


def default_times(num_versions: int) -> tuple[float, ...]:
    """``t_0 .. t_K`` evenly spaced in ``[0.5, 0.9]``, then the closing 1.0."""
    if num_versions == 1:
        return (0.5, 1.0)
    return tuple(round(0.5 + 0.4 * i / (num_versions - 1), 6) for i in range(num_versions)) + (1.0,)


def write_fake_run(
    run_dir: str | Path,
    graph: EvolvingGraph | None = None,
    *,
    dims: Sequence[int] = (8, 12, 16),
    layers: Sequence[int] | None = None,
    times: Sequence[float] | None = None,
    upto: int | None = None,
    aligned: bool = False,
    random_embeddings: bool = False,
    transform_kinds: Sequence[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a training-run folder with random models and transforms.

    Args:
        run_dir: Where to write.
        graph: The graph (default :func:`tiny_graph`).
        dims: ``D_0 .. D_K``.
        layers: SAGE layers per version (default 1 each).
        times: Time fractions (default :func:`default_times`).
        upto: Finish versions ``0..upto`` only (default all).
        aligned: Make older embeddings exactly the chain applied to the latest ones, so the
            alignment error on every probe is 0 (a known answer); the older models then do
            not reproduce their embeddings. Needs ``upto`` to be the last version.
        random_embeddings: Draw embeddings at random instead of running the models (fast at
            any size; the latest model then does not reproduce them).
        transform_kinds: Family of each ``B_1 .. B_K`` (default all ``linear``); an ``mlp``
            link gets a random non-zero residual so that it is really non-linear.
        seed: Seeds weights (version ``k`` uses ``1000 * seed + k``) and random embeddings.

    Returns:
        The run folder.
    """
    run = Path(run_dir)
    graph = graph if graph is not None else tiny_graph(seed)
    n = len(dims)
    layers = list(layers) if layers is not None else [1] * n
    times = tuple(times) if times is not None else default_times(n)
    upto = n - 1 if upto is None else upto
    if aligned and upto != n - 1:
        raise ValueError("aligned runs must finish every version")
    slices = TimeSlices(graph, times)
    feature_sizes = {name: len(g.vocab) for name, g in graph.item_features.items()}
    save_graph(graph, run / "graph")
    run_folder.claim(
        run,
        {
            "method": "bc-aligner",
            "lam": 16.0,
            "dataset": graph.name,
            "times": list(times),
            "seed": seed,
            "sizes": [[layer, d] for layer, d in zip(layers, dims, strict=True)],
        },
    )
    transforms: list[BackwardTransform] = []
    embeddings: list[tuple[torch.Tensor, torch.Tensor]] = []
    for k in range(upto + 1):
        torch.manual_seed(1000 * seed + k)
        config = SageConfig(layers[k], dims[k], feature_sizes)
        model = SageEncoder(config).eval()
        split = slices.split(k)
        if random_embeddings:
            gen = torch.Generator().manual_seed(1000 * seed + k)
            users = torch.randn(split.num_users, dims[k], generator=gen)
            items = torch.randn(split.num_items, dims[k], generator=gen)
        else:
            graph_input = GraphInput.build(
                graph,
                np.arange(slices.num_edges(k)),
                num_users=split.num_users,
                num_items=split.num_items,
            )
            with torch.no_grad():
                users, items = model(graph_input)
        embeddings.append((users, items))
        vdir = run_folder.version_dir(run, k)
        vdir.mkdir(parents=True, exist_ok=True)
        save_model(vdir / run_folder.MODEL, model)
        if k > 0:
            kind = transform_kinds[k - 1] if transform_kinds is not None else "linear"
            transform = TRANSFORMS.get(kind)(dims[k], dims[k - 1])
            if not transform.linear:
                with torch.no_grad():
                    for p in transform.parameters():
                        p.normal_(0.0, 0.3)
            transforms.append(transform)
            save_module(vdir / run_folder.TRANSFORM, transform, transform.to_config())
    if aligned:
        chain = TransformChain(transforms)
        top_u, top_i = embeddings[-1]
        for k in range(upto):
            u, i = embeddings[k]
            embeddings[k] = (chain.apply(top_u, k)[: len(u)], chain.apply(top_i, k)[: len(i)])
    for k, (users, items) in enumerate(embeddings):
        vdir = run_folder.version_dir(run, k)
        run_folder.write_embeddings(vdir, {"user_emb": users, "item_emb": items})
        run_folder.write_version_record(vdir, {"k": k, "metrics": {"recall@50": 0.0}}, [])
        run_folder.mark_done(vdir, k)
    return run
