"""The release gate on synthetic runs with a known answer, and its command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from bcemb.store import EmbeddingStore, publish
from bcemb.store._testing_gate import write_exact_run
from bcemb.store.cli import app
from bcemb.store.consumers import (
    BASELINE_COLUMN,
    RULES,
    ConsumerDraft,
    ConsumerRegistry,
    LoadedConsumer,
    evaluate,
    measure_baseline,
)
from bcemb.store.gate import DECISIONS, EXIT_REFUSED, GateRefused, StoreView, gate_run, publish_gated
from bcemb.store.gate_cli import RULE_NAMES

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A published two-version run and four three-version candidates continuing it."""
    base = tmp_path_factory.mktemp("gate")
    out = {"store_run": write_exact_run(base / "v01", upto=1)}
    for last in ("exact", "noisy", "rotated", "non-bc"):
        out[last] = write_exact_run(base / last, last=last)
    return out


def _linear_draft(store: EmbeddingStore, name: str = "lin.user", kind: str = "user") -> ConsumerDraft:
    """A linear consumer whose labels are its own decisions on ver-0: baseline AUC 1."""
    ids = [str(i) for i in store.ids(kind)]
    z0 = np.asarray(store.get(ids, version=0, kind=kind), dtype=np.float64)
    w = np.random.default_rng(1).standard_normal(z0.shape[1])
    labels = (z0 @ w > np.median(z0 @ w)).astype(np.int64)
    return ConsumerDraft(
        name, "linear", 0, kind, "roc_auc", {},
        tensors={"coef": torch.from_numpy(w)},
        tables={"probes": pa.table({"id": ids, "label": labels})},
    )


@pytest.fixture()
def gated_store(tmp_path: Path, runs: dict[str, Path]) -> Path:
    """Two linear consumers registered the way consumers were before the gate's interval:
    without their baseline's per-row scores."""
    root = tmp_path / "store"
    publish(runs["store_run"], root, min_probes=8, check_model=False)
    s = EmbeddingStore(root)
    reg = ConsumerRegistry(root)
    for draft in (_linear_draft(s), _linear_draft(s, "lin.item", "item")):
        base, _ = evaluate(LoadedConsumer.from_draft(draft), StoreView(s))
        reg.add(draft, space=s.space(0), baseline=base)
    return root


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(
    ("last", "passes"), [("exact", True), ("noisy", True), ("rotated", False), ("non-bc", False)]
)
def test_gate_decisions_with_a_known_answer(
    gated_store: Path, runs: dict[str, Path], last: str, passes: bool, rule: str
) -> None:
    report = gate_run(runs[last], gated_store, rule=rule)
    assert report.passed is passes
    assert {r.name for r in report.results} == {"lin.user", "lin.item"}
    for r in report.results:
        assert r.baseline == pytest.approx(1.0) and r.rule == rule
        assert r.drop_low <= r.drop <= r.drop_high and r.resamples == 1000
        if last == "exact":
            assert r.candidate == pytest.approx(1.0) and abs(r.drop) < 1e-9
            assert r.drop_low == r.drop_high == 0.0
        if not passes:  # a random rotation (or a new model) leaves chance-level AUC
            assert r.candidate < 0.8 and r.drop_low > 0.2 and not r.passed
    assert report.notes == ()  # the candidates continue the store's lineage


def test_a_drop_within_the_noise_passes_the_interval_rule_only(
    gated_store: Path, runs: dict[str, Path]
) -> None:
    noisy = gate_run(runs["noisy"], gated_store)
    worst = max(noisy.results, key=lambda r: r.drop)
    assert worst.drop_low < worst.drop and worst.drop > 0
    # A threshold between the interval's lower end and the measured drop: the drop is over
    # it, but not confidently.
    ConsumerRegistry(gated_store).set_threshold(worst.name, (max(worst.drop_low, 0) + worst.drop) / 2)
    interval = {r.name: r for r in gate_run(runs["noisy"], gated_store).results}[worst.name]
    assert interval.passed and interval.within_noise and interval.rule == "interval"
    point = gate_run(runs["noisy"], gated_store, rule="point")
    assert [r.name for r in point.refused] == [worst.name]
    # A consumer's own rule applies when the gate is not told one; the gate's overrides it.
    ConsumerRegistry(gated_store).set_rule(worst.name, "point")
    assert [r.name for r in gate_run(runs["noisy"], gated_store).refused] == [worst.name]
    assert gate_run(runs["noisy"], gated_store, rule="interval").passed


def test_interval_is_paired_and_reproducible(gated_store: Path, runs: dict[str, Path]) -> None:
    one = gate_run(runs["noisy"], gated_store, seed=3)
    # Registered without per-row scores, in the store's current space: recomputed from it.
    assert {r.interval for r in one.results} == {"paired-recomputed"}
    two = gate_run(runs["noisy"], gated_store, seed=3)
    assert [(r.drop_low, r.drop_high) for r in one.results] == [(r.drop_low, r.drop_high) for r in two.results]
    none = gate_run(runs["noisy"], gated_store, resamples=0)
    assert all(r.interval == "none" and r.resamples == 0 for r in none.results)


def test_consumers_registered_now_record_their_baseline_scores(
    gated_store: Path, runs: dict[str, Path]
) -> None:
    s = EmbeddingStore(gated_store)
    draft = _linear_draft(s, "lin.scored")
    base = measure_baseline(draft, StoreView(s))
    assert base == pytest.approx(1.0) and BASELINE_COLUMN in draft.tables["probes"].column_names
    ConsumerRegistry(gated_store).add(draft, space="v0-0000000000000000", baseline=base)
    result = {r.name: r for r in gate_run(runs["rotated"], gated_store).results}["lin.scored"]
    assert result.interval == "paired" and not result.passed


def test_older_consumers_without_a_view_of_their_space_resample_the_candidate(
    gated_store: Path, runs: dict[str, Path]
) -> None:
    s = EmbeddingStore(gated_store)
    draft = _linear_draft(s, "lin.old")
    # No baseline scores, and a space that no store or run at hand serves.
    ConsumerRegistry(gated_store).add(draft, space="v0-0000000000000000", baseline=1.0)
    for last, passes in (("exact", True), ("rotated", False)):
        r = {r.name: r for r in gate_run(runs[last], gated_store).results}["lin.old"]
        assert r.interval == "candidate-only" and r.passed is passes
        assert r.drop_low <= r.drop <= r.drop_high


def test_a_format_1_registry_is_read(gated_store: Path, runs: dict[str, Path]) -> None:
    path = gated_store / "consumers" / "registry.json"
    body = json.loads(path.read_text())
    body["format_version"] = 1
    for c in body["consumers"].values():
        del c["rule"]
    path.write_text(json.dumps(body))
    report = gate_run(runs["rotated"], gated_store)
    assert not report.passed and {r.rule for r in report.results} == {"interval"}


def test_rule_names_agree() -> None:
    assert tuple(DECISIONS) == RULES == RULE_NAMES


def test_publish_gated_refuses_before_writing(gated_store: Path, runs: dict[str, Path]) -> None:
    before = sorted(p.relative_to(gated_store) for p in gated_store.rglob("*"))
    with pytest.raises(GateRefused, match="lin.user") as err:
        publish_gated(runs["rotated"], gated_store, min_probes=8, check_model=False)
    assert not err.value.report.passed
    assert sorted(p.relative_to(gated_store) for p in gated_store.rglob("*")) == before
    m, report, registered = publish_gated(runs["exact"], gated_store, min_probes=8, check_model=False)
    assert m.latest == 2 and report is not None and report.passed and registered == []


def test_threshold_per_consumer(gated_store: Path, runs: dict[str, Path]) -> None:
    noisy = gate_run(runs["noisy"], gated_store)
    worst = max(noisy.results, key=lambda r: r.drop)
    assert 0 < worst.drop < 0.02
    ConsumerRegistry(gated_store).set_threshold(worst.name, worst.drop / 2)
    again = gate_run(runs["noisy"], gated_store, rule="point")
    assert [r.name for r in again.refused] == [worst.name]


def test_gate_cli_exit_3_table_and_json(gated_store: Path, runs: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "gate.json"
    code, out, _ = invoke("gate", runs["rotated"], "--store", gated_store, "--report", report)
    assert code == EXIT_REFUSED
    header = out.splitlines()[0].split()
    assert header == [
        "consumer", "version", "metric", "baseline", "candidate", "drop", "95%-interval",
        "threshold", "rule", "verdict",
    ]
    assert "lin.user" in out and "REFUSED" in out and "gate refused" in out
    body = json.loads(report.read_text())
    assert body["decision"] == "refuse" and sorted(body["refused"]) == ["lin.item", "lin.user"]
    assert {c["name"] for c in body["consumers"]} == {"lin.item", "lin.user"}
    assert body["rule"] is None and body["bootstrap"] == {"resamples": 1000, "seed": 0, "level": 0.95}
    for c in body["consumers"]:
        assert c["drop_low"] <= c["drop"] <= c["drop_high"] and c["rule"] == "interval"
        assert c["interval"] == "paired-recomputed"
    code, out, _ = invoke("gate", runs["exact"], "--store", gated_store)
    assert code == 0 and "gate passed" in out
    # The strict rule, per consumer and for the whole gate.
    noisy = gate_run(runs["noisy"], gated_store)
    worst = max(noisy.results, key=lambda r: r.drop)
    ConsumerRegistry(gated_store).set_threshold(worst.name, worst.drop / 2)
    code, out, _ = invoke("gate", runs["noisy"], "--store", gated_store)
    assert code == 0 and "ok (within noise)" in out
    code, out, _ = invoke("gate", runs["noisy"], "--store", gated_store, "--rule", "point")
    assert code == EXIT_REFUSED and worst.name in out.splitlines()[-1]
    code, _, err = invoke("gate", runs["noisy"], "--store", gated_store, "--rule", "median")
    assert code == 2 and "'median' is not one of interval, point" in err
    code, out, _ = invoke("consumers", "set-rule", worst.name, "point", "--store", gated_store)
    assert code == 0 and "rule point" in out
    code, _, _ = invoke("gate", runs["noisy"], "--store", gated_store)
    assert code == EXIT_REFUSED
    code, out, _ = invoke("consumers", "set-rule", worst.name, "default", "--store", gated_store)
    assert code == 0 and "rule default" in out
    ConsumerRegistry(gated_store).set_threshold(worst.name, 0.02)

    code, out, err = invoke("publish", runs["non-bc"], "--store", gated_store, "--gate", "--min-probes", 8)
    assert code == EXIT_REFUSED and "nothing was published" in err and "lin.item" in out
    assert EmbeddingStore(gated_store).latest == 1
    code, out, _ = invoke("publish", runs["exact"], "--store", gated_store, "--gate", "--min-probes", 8, "--no-check-model")
    assert code == 0 and "gate passed" in out and "published version 2" in out


def test_gate_of_a_run_that_does_not_continue_the_store(gated_store: Path, tmp_path: Path) -> None:
    other = write_exact_run(tmp_path / "other", seed=5)
    report = gate_run(other, gated_store)
    assert not report.passed  # another version 0: the consumers see unrelated vectors
    assert any("not a continuation" in n for n in report.notes)


def test_consumers_cli_add_ls_rm(gated_store: Path, tmp_path: Path) -> None:
    s = EmbeddingStore(gated_store)
    draft = _linear_draft(s, "cli.lin")
    save_file({"coef": draft.tensors["coef"].float()}, tmp_path / "w.safetensors")
    import pyarrow.parquet as pq

    pq.write_table(draft.tables["probes"], tmp_path / "probes.parquet")
    code, out, _ = invoke(
        "consumers", "add", "cli.lin", "--store", gated_store, "--kind", "linear",
        "--weights", tmp_path / "w.safetensors", "--probes", tmp_path / "probes.parquet",
        "--threshold", 0.05, "--rule", "point",
    )
    assert code == 0 and "baseline 1.0000" in out and "threshold 5.0%" in out
    reg = ConsumerRegistry(gated_store)
    assert reg.get("cli.lin").rule == "point"
    assert BASELINE_COLUMN in reg.load("cli.lin").tables["probes"].column_names
    code, _, err = invoke(
        "consumers", "add", "cli.lin", "--store", gated_store, "--kind", "linear",
        "--weights", tmp_path / "w.safetensors", "--probes", tmp_path / "probes.parquet",
    )
    assert code == 1 and "already registered" in err
    # A torch module of a known architecture, and a retrieval consumer whose neighbours
    # are recorded at registration.
    lin = torch.nn.Linear(s.dim(0), 1)
    save_file(dict(lin.state_dict()), tmp_path / "m.safetensors")
    code, out, _ = invoke(
        "consumers", "add", "cli.torch", "--store", gated_store, "--kind", "torch",
        "--weights", tmp_path / "m.safetensors", "--probes", tmp_path / "probes.parquet",
        "--config", json.dumps({"architecture": "linear", "in_features": s.dim(0)}), "--metric", "accuracy",
    )
    assert code == 0, out
    pq.write_table(pa.table({"query": [str(i) for i in s.ids("user")[:20]]}), tmp_path / "q.parquet")
    pq.write_table(pa.table({"id": [str(i) for i in s.ids("item")]}), tmp_path / "t.parquet")
    code, out, _ = invoke(
        "consumers", "add", "cli.knn", "--store", gated_store, "--kind", "retrieval",
        "--queries", tmp_path / "q.parquet", "--targets", tmp_path / "t.parquet", "--metric", "overlap@5",
    )
    assert code == 0 and "overlap@5 baseline 1.0000" in out
    code, out, _ = invoke("consumers", "ls", "--store", gated_store, "--evaluate")
    assert code == 0 and "cli.knn" in out and "current" in out and "5 consumer(s)" in out
    assert "point" in next(line for line in out.splitlines() if line.startswith("cli.lin "))
    code, out, _ = invoke("consumers", "ls", "--store", gated_store, "--json")
    assert {c["name"] for c in json.loads(out)["consumers"]} >= {"cli.lin", "cli.torch", "cli.knn"}
    code, out, _ = invoke("consumers", "rm", "cli.lin", "--store", gated_store)
    assert code == 0 and not any(p.name.startswith("cli.lin.") for p in (gated_store / "consumers").iterdir())
    code, _, err = invoke("consumers", "rm", "cli.lin", "--store", gated_store)
    assert code == 1 and "no consumer named 'cli.lin'" in err


def test_first_publish_trains_and_registers_consumers(tmp_path: Path, toy_graph: object) -> None:
    run = write_exact_run(tmp_path / "run", toy_graph, dims=(8, 12))  # type: ignore[arg-type]
    root = tmp_path / "store"
    options = {"hidden": (16,), "dropout": (0.0,), "epochs": 5, "min_probes": 10, "min_queries": 10, "k": 10}
    m, report, registered = publish_gated(
        run, root, consumer_options=options, min_probes=8, check_model=False
    )
    assert m.latest == 1 and report is not None
    assert "retrieval.items" in registered and any(n.startswith("task.") for n in registered)
    assert all(r.pending for r in report.results)  # judged before they were registered
    assert {r.interval for r in report.results} == {"paired"}
    reg = ConsumerRegistry(root)
    assert sorted(c.name for c in reg.list()) == sorted(registered)
    for c in reg.list():  # the baseline's per-row scores are kept for later gates
        loaded = reg.load(c)
        role = "queries" if c.kind == "retrieval" else "probes"
        assert BASELINE_COLUMN in loaded.tables[role].column_names
    knn = reg.get("retrieval.items")
    assert knn.metric == "recall@10" and knn.version == 0 and knn.space.startswith("v0-")
    # The exact chain serves ver-0 as it was: every consumer keeps its baseline.
    report = gate_run(run, root)
    for r in report.results:
        assert r.candidate == pytest.approx(r.baseline, abs=1e-6), r
        assert r.interval == "paired" and r.drop_low == pytest.approx(0, abs=1e-6), r
    # An empty store with --no-consumers gets none.
    _, _, none = publish_gated(run, tmp_path / "bare", consumers=False, min_probes=8, check_model=False)
    assert none == [] and ConsumerRegistry(tmp_path / "bare").list() == []


def test_check_separates_chain_error_from_drift_with_a_hop_budget(tmp_path: Path) -> None:
    from bcemb.store._testing import write_fake_run

    run = write_fake_run(tmp_path / "run", dims=(8, 12, 16))
    root = tmp_path / "store"
    publish(run, root, min_probes=16, same_graph=True)
    files = EmbeddingStore(root).manifest.versions[-1].files
    assert {"same_graph_v0", "same_graph_v1"} <= set(files)
    # Random models and random transforms: the chain's own error is of the norm's size.
    code, out, _ = invoke("check", "--store", root)
    assert code == 0 and "same-graph probe" in out and "OVER" in out
    assert "recommendation: re-anchor" in out and "keep-all snapshot of version 0" in out
    code, out, _ = invoke("check", "--store", root, "--json", "--hop-budget", 100)
    body = json.loads(out)
    assert body["recommendation"] is None and [h["hops"] for h in body["same_graph"]] == [2, 1]
    assert all(h["budget"] == 100 * h["hops"] for h in body["same_graph"])
