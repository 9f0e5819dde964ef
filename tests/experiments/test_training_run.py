"""Issue 9: a version's numbers do not depend on what ran before it in the process, and a run
folder refuses another configuration."""

import shutil

import pytest
import torch

from bcemb.experiments.context import ExperimentData
from bcemb.experiments.training_run import train_method
from bcemb.methods import build_method
from bcemb.run_folder import RunFolderError
from cases import tiny_config


def _config(**kw):
    cfg = tiny_config(**kw)
    cfg.train.epochs, cfg.train.eval_every = 3, 1
    return cfg


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for key, value in x.model.state_dict().items():
            assert torch.equal(value, y.model.state_dict()[key]), (x.k, key)
        if x.transform is not None:
            for key, value in x.transform.state_dict().items():
                assert torch.equal(value, y.transform.state_dict()[key]), (x.k, key)


def test_interrupted_and_resumed_equals_fresh_equals_inside_a_benchmark(toy_graph, tmp_path, monkeypatch):
    cfg = _config(seed=5)
    data = ExperimentData(toy_graph, times=cfg.times)
    fresh = train_method(data, build_method("bc-aligner"), cfg, tmp_path / "fresh", show_progress=False)

    # Interrupted while training version 2 (versions 0 and 1 finished), resumed in a new process
    # state: the global RNG has moved on in between.
    import bcemb.methods.base as base

    real = base.train_model

    def interrupt(*args, **kwargs):
        if kwargs.get("desc", "").endswith("v2"):
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(base, "train_model", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_method(ExperimentData(toy_graph, times=cfg.times), build_method("bc-aligner"), cfg,
                     tmp_path / "resumed", show_progress=False)
    monkeypatch.setattr(base, "train_model", real)
    torch.manual_seed(12345)
    torch.rand(17)
    resumed = train_method(ExperimentData(toy_graph, times=cfg.times), build_method("bc-aligner"), cfg,
                           tmp_path / "resumed", show_progress=False)
    _assert_same(fresh, resumed)

    # Inside a benchmark: other methods train first in the same process and share the cache.
    data = ExperimentData(toy_graph, times=cfg.times)
    for other in ("non-bc", "joint-lin-sloss"):
        train_method(data, build_method(other), cfg, tmp_path / "bench" / other,
                     cache_dir=tmp_path / "bench" / "cache", show_progress=False)
    inside = train_method(data, build_method("bc-aligner"), cfg, tmp_path / "bench" / "bc-aligner",
                          cache_dir=tmp_path / "bench" / "cache", show_progress=False)
    _assert_same(fresh, inside)


@pytest.mark.parametrize(
    ("method", "change"),
    [("non-bc", {}), ("bc-aligner", {"lam": 4.0}), ("bc-aligner", {"seed": 2}),
     ("bc-aligner", {"sizes": ((1, 8), (1, 12), (2, 20))})],
    ids=["other-method", "other-lambda", "other-seed", "other-sizes"],
)
def test_a_run_folder_refuses_another_configuration(toy_graph, tmp_path, method, change):
    cfg = _config(seed=1)
    data = ExperimentData(toy_graph, times=cfg.times)
    out = tmp_path / "run"
    train_method(data, build_method("bc-aligner", lam=16.0), cfg, out, show_progress=False)
    lam = change.pop("lam", 16.0)
    other = _config(**{"seed": 1, **change})
    with pytest.raises((RunFolderError, ValueError)):
        train_method(data, build_method(method, lam=lam), other, out, show_progress=False)
    # the finished run is untouched and still loads
    again = train_method(data, build_method("bc-aligner", lam=16.0), cfg, out, show_progress=False)
    assert len(again) == data.num_versions
    shutil.rmtree(out)
