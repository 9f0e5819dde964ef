import pandas as pd
import pytest

from bcemb.evaluation.report import write_report
from bcemb.evaluation.summary import KEEP_ALL, table3
from bcemb.experiments.benchmark import run_benchmark
from cases import tiny_config


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cfg = tiny_config(seed=3)
    cfg.train.epochs = 6
    rows = run_benchmark(cfg, out, methods=["non-bc", "bc-aligner", "fix-m0"], lams=[4.0], show_progress=False)
    return out, cfg, rows


def test_keep_all_has_zero_degradation_and_rows_are_complete(bench):
    out, _, rows = bench
    assert set(rows.columns) == {"method", "lam", "version", "task", "seed", "metric", "value"}
    t = table3(rows).set_index("method")
    assert t.loc[KEEP_ALL, "intended"] == 0 and t.loc[KEEP_ALL, "unintended"] == 0
    assert t.loc["fix-m0", "align_error"] == 0 and abs(t.loc["fix-m0", "unintended"]) < 1e-9
    assert pd.read_parquet(out / "results.parquet").shape == rows.shape
    assert (out / "runs" / "bc-aligner" / "lam=4" / "version_2" / "done.json").is_file()


def test_non_bc_has_larger_alignment_error_than_bc_aligner(bench):
    _, _, rows = bench
    t = table3(rows)
    err = {(r.method, r.lam): r.align_error for r in t.itertuples()}
    assert err[("non-bc", 16.0)] > err[("bc-aligner", 16.0)]


def test_rerun_resumes_without_training(bench, monkeypatch):
    out, cfg, rows = bench
    import bcemb.training.trainer as trainer

    def boom(*a, **k):
        raise AssertionError("a finished version was trained again")

    monkeypatch.setattr(trainer, "train_model", boom)
    monkeypatch.setattr("bcemb.methods.base.train_model", boom)
    again = run_benchmark(cfg, out, methods=["non-bc", "bc-aligner", "fix-m0"], lams=[4.0], show_progress=False)
    pd.testing.assert_frame_equal(again.sort_values(list(again.columns)).reset_index(drop=True),
                                  rows.sort_values(list(rows.columns)).reset_index(drop=True))


def test_report_writes_markdown_and_figures(bench):
    out, _, _ = bench
    path = write_report(out)
    text = path.read_text()
    assert "Table 3" in text and "BC-Aligner" in text and "-3.62" in text  # paper column
    for name in ("figure3_metrics_over_time.png", "figure4_tasks_bc_aligner.png", "figure5_lambda.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_seeds():
    from bcemb.experiments.benchmark import parse_seeds

    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("5") == [0, 1, 2, 3, 4]
    for bad in ("", "a,b", "0", "1,1"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


@pytest.mark.slow
def test_seeds_give_intervals_and_a_paired_comparison(tmp_path):
    import numpy as np

    from bcemb.experiments.benchmark import run_seeds, seed_dir

    cfg = tiny_config()
    cfg.train.epochs, cfg.consumer.seeds = 2, 1
    per_seed = run_seeds(cfg, tmp_path, [0, 1], methods=["non-bc", "joint-lin-sloss", "bc-aligner"], lams=[],
                         show_progress=False)
    assert set(per_seed) == {0, 1} and all((seed_dir(tmp_path, s) / "results.parquet").is_file() for s in (0, 1))
    # the two seeds trained different models
    t0, t1 = (table3(per_seed[s]).set_index("method") for s in (0, 1))
    assert t0.loc["bc-aligner", "align_error"] != t1.loc["bc-aligner", "align_error"]
    text = write_report(tmp_path).read_text()
    assert "training seeds: [0, 1]" in text and " ± " in text and "BC-Aligner − Joint-Lin-SLoss" in text
    t3 = pd.read_csv(tmp_path / "table3.csv").set_index("method")
    assert t3.loc["bc-aligner", "seeds"] == 2 and np.isfinite(t3.loc["bc-aligner", "align_error_ci"])
    expected = (t0.loc["bc-aligner", "align_error"] + t1.loc["bc-aligner", "align_error"]) / 2
    assert t3.loc["bc-aligner", "align_error"] == pytest.approx(expected)
    paired = pd.read_csv(tmp_path / "paired.csv").set_index("metric")
    diff = [t.loc["bc-aligner", "sum"] - t.loc["joint-lin-sloss", "sum"] for t in (t0, t1)]
    assert paired.loc["sum", "difference"] == pytest.approx(np.mean(diff)) and paired.loc["sum", "seeds"] == 2
