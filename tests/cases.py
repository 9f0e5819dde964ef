"""Shared helpers for tests: a tiny experiment on the toy graph."""

from __future__ import annotations

from bcemb.experiments.config import ExperimentConfig, profile_config
from bcemb.experiments.context import ExperimentData
from bcemb.methods import MethodContext, ModelCache

TINY_SIZES = ((1, 8), (1, 12), (2, 16))
TINY_TIMES = (0.5, 0.7, 0.85, 1.0)


def tiny_config(**overrides) -> ExperimentConfig:
    base = dict(
        sizes=TINY_SIZES, times=TINY_TIMES, dataset="synthetic",
        dataset_options={"num_users": 150, "num_items": 120, "num_edges": 4000, "num_factors": 4, "seed": 7},
    )
    base.update(overrides)
    cfg = profile_config("quick", **base)
    cfg.train.epochs, cfg.train.eval_every, cfg.train.warmup_epochs = 4, 2, 2
    cfg.train.batch_size, cfg.train.posthoc_steps, cfg.train.patience = 512, 200, None
    cfg.train.ks = (10, 20, 50)
    cfg.consumer.hidden, cfg.consumer.dropout, cfg.consumer.seeds = (16,), (0.0,), 2
    cfg.consumer.epochs, cfg.consumer.patience = 15, 5
    return cfg


def tiny_context(graph, cache_dir=None, seed: int = 0, **overrides) -> tuple[ExperimentData, MethodContext]:
    cfg = tiny_config(seed=seed, **overrides)
    data = ExperimentData(graph, times=cfg.times)
    ctx = data.method_context(cfg, cache=ModelCache(cache_dir), show_progress=False)
    return data, ctx


def task(data: ExperimentData, ctx: MethodContext, k: int):
    """The (objective, evaluator) pair of version ``k``."""
    return ctx.task(k)
