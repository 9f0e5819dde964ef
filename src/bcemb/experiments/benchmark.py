"""The paper's benchmark: every method, the consumers, the three metrics, raw result rows.

Rows are ``(method, lam, version, task, seed, metric, value)`` and land in
``OUT/results.parquet``. Every stage resumes: finished model versions, trained consumers and
evaluated methods are kept on disk and not redone.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import pandas as pd
import torch

from bcemb.data.datasets import load_dataset
from bcemb.evaluation.consumer import ConsumerSuite
from bcemb.evaluation.metrics import alignment_error
from bcemb.experiments.config import ExperimentConfig
from bcemb.experiments.context import ExperimentData
from bcemb.experiments.training_run import train_method
from bcemb.methods import KEEP_ALL, METHODS, VersionArtifact, build_method, joint_methods, paper_methods
from bcemb.transforms import TransformChain
from bcemb.utils import environment, progress, resolve_device, write_json

logger = logging.getLogger(__name__)

__all__ = ["run_benchmark", "run_seeds", "parse_seeds", "seed_dir", "run_dir_name", "KEEP_ALL", "PAPER_LAMS"]

PAPER_LAMS: tuple[float, ...] = (1, 2, 4, 8, 16, 32)
ROW_COLUMNS = ["method", "lam", "version", "task", "seed", "metric", "value"]


def run_dir_name(method: str, lam: float) -> str:
    """Folder of one (method, lambda) run below ``OUT/runs``."""
    return f"{method}/lam={lam:g}" if method in joint_methods() else method


def _jobs(methods: Sequence[str], lams: Sequence[float], default_lam: float) -> list[tuple[str, float]]:
    names = [METHODS.canonical(m) for m in methods]
    if "non-bc" not in names:  # Keep-All's intended task is Non-BC's model
        names.insert(0, "non-bc")
    jobs = [(m, default_lam) for m in names]
    for m in names:
        if m in joint_methods():
            jobs += [(m, float(lam)) for lam in lams if float(lam) != default_lam]
    return jobs


def _chain_to_v0(arts: Sequence[VersionArtifact]) -> TransformChain:
    return TransformChain([a.transform for a in arts[1:] if a.transform is not None])


def run_benchmark(
    config: ExperimentConfig,
    out: str | Path,
    *,
    methods: Sequence[str] | None = None,
    lams: Sequence[float] = (),
    lam: float | None = None,
    show_progress: bool | None = None,
) -> pd.DataFrame:
    """Train every method (and the lambda sweep), train consumers, compute the metrics.

    Args:
        config: The experiment configuration (dataset, profile, sizes, seed, device).
        out: The benchmark folder; rerunning with the same folder resumes.
        methods: Registry names (default: all eight).
        lams: Extra lambdas for the joint methods (Figure 5).
        lam: The default lambda (None: ``config.lam``, 16 in the paper).
        show_progress: Progress bars (None: on when logging at INFO).

    Returns:
        All result rows (also written to ``OUT/results.parquet``).
    """
    if lam is not None:
        config.lam = float(lam)
    config.validate()
    lam = config.lam
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    graph = load_dataset(config.dataset, **config.dataset_options)
    data = ExperimentData(graph, times=config.times, device=device)
    jobs = _jobs(methods or paper_methods(), lams, float(lam))
    write_json(
        out / "benchmark.json",
        {"config": config.to_dict(), "jobs": [[m, lm] for m, lm in jobs], "graph": repr(graph),
         "environment": environment(), "started": time.time()},
    )
    runs: dict[tuple[str, float], list[VersionArtifact]] = {}
    bar = progress(jobs, desc="methods", show=show_progress)
    for name, lm in bar:
        bar.set_postfix(method=name, lam=f"{lm:g}")
        runs[(name, lm)] = train_method(
            data, build_method(name, lam=lm), config, out / "runs" / run_dir_name(name, lm),
            cache_dir=out / "cache", show_progress=show_progress,
        )
    m0 = runs[("non-bc", float(lam))][0].model

    @cache
    def real_z0(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return m0(data.version(k).embed_graph)

    suite = ConsumerSuite(data.tasks, config.consumer, seed=config.seed, folder=out / "consumers")
    suite.fit(real_z0, show_progress=show_progress)
    write_json(out / "consumers" / "selection.json", suite.selection())

    frames = [_keep_all_rows(runs[("non-bc", float(lam))], suite, real_z0, data)]
    for (name, lm), arts in progress(runs.items(), desc="evaluate", show=show_progress, leave=False):
        path = out / "metrics" / f"{run_dir_name(name, lm).replace('/', '_')}.parquet"
        if path.is_file():
            frames.append(pd.read_parquet(path))
            continue
        frame = _method_rows(name, lm, arts, suite, real_z0, data)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)[ROW_COLUMNS]
    tmp = out / "results.parquet.tmp"
    rows.to_parquet(tmp, index=False)
    tmp.replace(out / "results.parquet")
    return rows


def _intended_rows(name: str, lam: float, arts: Sequence[VersionArtifact]) -> list[dict]:
    return [
        {"method": name, "lam": lam, "version": a.k, "task": "intended", "seed": -1,
         "metric": metric, "value": v}
        for a in arts for metric, v in a.metrics.items()
    ]


def _auc_rows(name: str, lam: float, suite: ConsumerSuite, data: ExperimentData, z0_at) -> list[dict]:  # noqa: ANN001
    rows = []
    for task in data.tasks.tasks:  # tasks the log cannot label are skipped (with a warning)
        for k in data.tasks.test_times(task):
            for seed, auc in enumerate(suite.score(task, k, *z0_at(k))):
                rows.append({"method": name, "lam": lam, "version": k, "task": task, "seed": seed,
                             "metric": "auc", "value": auc})
    return rows


def _method_rows(
    name: str, lam: float, arts: Sequence[VersionArtifact], suite: ConsumerSuite, real_z0, data: ExperimentData,  # noqa: ANN001
) -> pd.DataFrame:
    chain = _chain_to_v0(arts)

    @cache
    def z0_tilde(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        sub = TransformChain(chain.transforms[:k])
        with torch.no_grad():
            user_emb, item_emb = arts[k].model(data.version(k).embed_graph)
        return sub.apply(user_emb, 0), sub.apply(item_emb, 0)

    rows = _intended_rows(name, lam, arts) + _auc_rows(name, lam, suite, data, z0_tilde)
    # Version 0 too: Table 3 averages versions 0..K as the paper does (every method's M_0 is
    # the same model, so its error is 0, measured rather than assumed).
    for k in range(data.num_versions):
        approx, real = torch.cat(z0_tilde(k)), torch.cat(real_z0(k))
        rows.append({"method": name, "lam": lam, "version": k, "task": "embedding", "seed": -1,
                     "metric": "align_error", "value": alignment_error(approx, real)})
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def _keep_all_rows(
    nonbc: Sequence[VersionArtifact], suite: ConsumerSuite, real_z0, data: ExperimentData,  # noqa: ANN001
) -> pd.DataFrame:
    """Keep-All: the independent M_k for the intended task, the real M_0 for consumers."""
    rows = _intended_rows(KEEP_ALL, float("nan"), nonbc) + _auc_rows(KEEP_ALL, float("nan"), suite, data, real_z0)
    rows += [{"method": KEEP_ALL, "lam": float("nan"), "version": k, "task": "embedding", "seed": -1,
              "metric": "align_error", "value": 0.0} for k in range(data.num_versions)]
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; a single number ``n`` -> ``0 .. n-1`` (``"5"``: five seeds)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError as err:
        raise ValueError(f"--seeds takes '0,1,2' or a count such as '5', got {text!r}") from err
    if not values:
        raise ValueError("--seeds is empty")
    if len(values) == 1:
        if values[0] < 1:
            raise ValueError(f"a seed count must be >= 1, got {values[0]}")
        return list(range(values[0]))
    if len(set(values)) != len(values) or min(values) < 0:
        raise ValueError(f"seeds must be distinct and >= 0, got {values}")
    return values


def seed_dir(out: str | Path, seed: int) -> Path:
    """The benchmark folder of one training seed below a multi-seed folder."""
    return Path(out) / f"seed_{seed}"


def run_seeds(
    config: ExperimentConfig, out: str | Path, seeds: Sequence[int], **kwargs: object
) -> dict[int, pd.DataFrame]:
    """:func:`run_benchmark` once per training seed into ``OUT/seed_<s>``; ``OUT/seeds.json``
    lists them (``bcemb report OUT`` then gives means with 95% t-intervals over seeds).

    Every seed is a whole benchmark (its own models, consumers and rows) and resumes alone.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in seeds]
    write_json(out / "seeds.json", {"seeds": seeds, "config": config.to_dict()})
    results = {}
    for s in seeds:
        cfg = copy.deepcopy(config)
        cfg.seed = s
        logger.info("training seed %d of %s", s, seeds)
        results[s] = run_benchmark(cfg, seed_dir(out, s), **kwargs)  # type: ignore[arg-type]
    return results
