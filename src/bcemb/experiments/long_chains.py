"""Chain errors of finished run folders (issue 9's long chains): every pair ``j < k``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bcemb.data.io import load_graph
from bcemb.evaluation.chains import chain_errors, errors_frame
from bcemb.experiments.context import ExperimentData
from bcemb.experiments.training_run import load_run_versions
from bcemb.run_folder import read_config

__all__ = ["chain_frame"]


def chain_frame(runs: Sequence[str | Path]) -> pd.DataFrame:
    """``(method, seed, run, j, k, hops, error)`` of every run folder, on its own saved graph.

    Raises:
        ValueError: A run has unfinished versions.
    """
    datas: dict[str, ExperimentData] = {}
    frames = []
    for run in map(Path, runs):
        cfg = read_config(run)
        key = repr((str((run / "graph").resolve()), cfg["times"]))
        if key not in datas:
            datas[key] = ExperimentData(load_graph(run / "graph"), times=cfg["times"])
        data = datas[key]
        versions = load_run_versions(run)
        if len(versions) != data.num_versions:
            raise ValueError(f"{run}: {len(versions)} of {data.num_versions} versions are finished")
        err = chain_errors(versions, lambda k, d=data: d.version(k).embed_graph)
        frames.append(errors_frame(err, method=cfg.get("method", "?"), seed=cfg.get("seed", 0), run=str(run)))
    return pd.concat(frames, ignore_index=True)
