"""``bcemb store consumers add|ls|rm|set-threshold|set-rule``, ``bcemb store gate`` and ``bcemb store doctor``.

Mounted on the ``bcemb store`` app by :func:`register`. The gate exits with status 3
(:data:`bcemb.store.gate.EXIT_REFUSED`) when it refuses, 1 on errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from bcemb.cli_options import one_of

__all__ = ["BootstrapSeedOpt", "ResamplesOpt", "RuleOpt", "consumers_app", "register"]

consumers_app = typer.Typer(
    help="Frozen consumers the gate protects: add, list, remove.",
    no_args_is_help=True,
    add_completion=False,
)

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="Store directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# bcemb.store.consumers.RULES, not imported so that ``--help`` stays light (a test compares).
RULE_NAMES = ("interval", "point")


def _rule(value: str | None) -> str | None:
    return None if value is None else one_of("--rule", RULE_NAMES)(value)


RuleOpt = Annotated[
    str | None,
    typer.Option(
        "--rule",
        callback=_rule,
        help="interval: refuse when a drop's 95% interval lies above the threshold; point: when "
        "the measured drop does (default: each consumer's own rule, else interval).",
    ),
]
ResamplesOpt = Annotated[
    int, typer.Option("--resamples", min=0, help="Bootstrap resamples of each drop's interval (0: none).")
]
BootstrapSeedOpt = Annotated[int, typer.Option("--bootstrap-seed", help="Seed of the bootstrap.")]


def _errors() -> Any:
    from bcemb.store.cli import _errors as store_errors

    return store_errors()


def _table(rows: list[list[Any]], header: list[str]) -> str:
    from bcemb.store.cli import _table as store_table

    return store_table(rows, header)


def _read_table(path: Path | None, what: str) -> Any:
    import pyarrow.parquet as pq

    if path is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}")
    return pq.read_table(path)


@consumers_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Unique name of the consumer in the store.")],
    store: StoreOpt,
    kind: Annotated[str, typer.Option(help="mlp, torch, linear or retrieval.")],
    version: Annotated[int, typer.Option("--version", "-v", help="The version it consumes.")] = 0,
    input_kind: Annotated[
        str, typer.Option("--input", help="user, item or edge (retrieval: the query kind).")
    ] = "user",
    metric: Annotated[
        str, typer.Option(help="roc_auc, accuracy, recall@K or overlap@K.")
    ] = "roc_auc",
    weights: Annotated[
        Path | None, typer.Option(help="safetensors weights (mlp, torch, linear: coef, intercept).")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(help='JSON config, e.g. {"architecture": "linear", "in_features": 32}.'),
    ] = None,
    probes: Annotated[
        Path | None,
        typer.Option(help="Labelled probe set (Parquet: id, label; or user_id, item_id, label)."),
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option(help="Retrieval queries (Parquet: query[, relevant, exclude, neighbours])."),
    ] = None,
    targets: Annotated[Path | None, typer.Option(help="Retrieval targets (Parquet: id).")] = None,
    threshold: Annotated[
        float, typer.Option(help="Largest relative drop the gate accepts.")
    ] = 0.02,
    baseline: Annotated[
        float | None,
        typer.Option(help="Baseline metric (default: measured on the store's current view)."),
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a consumer of that name.")] = False,
    rule: Annotated[
        str | None,
        typer.Option("--rule", callback=_rule, help="Its decision rule: interval or point (default: the gate's)."),
    ] = None,
) -> None:
    """Register a frozen consumer with its probe set; its baseline is measured now."""
    import pyarrow as pa

    from bcemb.models.io import read_tensors
    from bcemb.store.consumers import ConsumerDraft, ConsumerRegistry, measure_baseline, parse_metric, top_k
    from bcemb.store.gate import StoreView
    from bcemb.store.store import EmbeddingStore

    with _errors():
        s = EmbeddingStore(store, verify=False)
        cfg = json.loads(config) if config else {}
        if not isinstance(cfg, dict):
            raise ValueError("--config must be a JSON object")
        tensors = read_tensors(weights)[0] if weights is not None else {}
        tables = {}
        for role, path in (("probes", probes), ("queries", queries), ("targets", targets)):
            table = _read_table(path, role)
            if table is not None:
                tables[role] = table
        view = StoreView(s)
        if kind == "retrieval" and "queries" in tables and "neighbours" not in tables["queries"].column_names:
            # Record the top-K in the space the consumer is registered against.
            k = parse_metric(metric)[1] or 10
            q = tables["queries"]
            target_ids = [str(v) for v in tables["targets"].column("id").to_pylist()] if "targets" in tables else []
            exclude = (
                [[str(v) for v in (r or [])] for r in q.column("exclude").to_pylist()]
                if "exclude" in q.column_names
                else None
            )
            top = top_k(
                view(input_kind, [str(v) for v in q.column("query").to_pylist()], version),
                view(cfg.get("target_kind", "item"), target_ids, version),
                k,
                exclude,
                target_ids,
            )
            tables["queries"] = q.append_column("neighbours", pa.array(top, pa.list_(pa.string())))
            cfg.setdefault("k", k)
        draft = ConsumerDraft(
            name=name,
            kind=kind,
            version=version,
            input=input_kind,
            metric=metric,
            config=cfg,
            tensors=tensors,
            tables=tables,
            threshold=threshold,
            source="bcemb store consumers add",
            rule=rule,
        )
        draft.validate()
        # Measured here, the per-row scores are recorded for the gate's paired interval; a
        # baseline given by hand has none (the gate then resamples the candidate alone).
        value = baseline if baseline is not None else measure_baseline(draft, view)
        c = ConsumerRegistry(store).add(draft, space=s.space(version), baseline=value, replace_existing=replace)
    typer.echo(
        f"registered consumer {c.name} ({c.kind}, version {c.version}, {c.metric} baseline "
        f"{c.baseline:.4f}, threshold {c.threshold:.1%}) in {store}"
    )


@consumers_app.command("ls")
def ls(
    store: StoreOpt,
    as_json: JsonOpt = False,
    evaluate_now: Annotated[
        bool, typer.Option("--evaluate", help="Also measure each consumer on the store's current view.")
    ] = False,
) -> None:
    """List the registered consumers."""
    from bcemb.store.consumers import ConsumerRegistry

    with _errors():
        consumers = ConsumerRegistry(store).list()
        current: dict[str, float] = {}
        if evaluate_now and consumers:
            from bcemb.store.gate import gate_store
            from bcemb.store.store import EmbeddingStore

            # Only the current values are shown: no interval to pay for.
            report = gate_store(EmbeddingStore(store, verify=False), resamples=0)
            current = {r.name: r.candidate for r in report.results}
    if as_json:
        rows = [{**c.to_dict(), **({"current": current.get(c.name)} if evaluate_now else {})} for c in consumers]
        typer.echo(json.dumps({"consumers": rows}, indent=1))
        return
    header = ["consumer", "kind", "version", "input", "metric", "baseline", "threshold", "rule", "probes"]
    if evaluate_now:
        header.append("current")
    table = []
    for c in consumers:
        row = [
            c.name, c.kind, c.version, c.input, c.metric, f"{c.baseline:.4f}", f"{c.threshold:.1%}",
            c.rule or "default", c.num_probes,
        ]
        if evaluate_now:
            row.append(f"{current.get(c.name, float('nan')):.4f}")
        table.append(row)
    typer.echo(_table(table, header))
    typer.echo(f"{len(consumers)} consumer(s) registered in {store}")


@consumers_app.command("rm")
def rm(
    name: Annotated[str, typer.Argument(help="The consumer to remove.")],
    store: StoreOpt,
) -> None:
    """Unregister a consumer and delete its files."""
    from bcemb.store.consumers import ConsumerRegistry

    with _errors():
        ConsumerRegistry(store).remove(name)
    typer.echo(f"removed consumer {name} from {store}")


@consumers_app.command("set-threshold")
def set_threshold(
    name: Annotated[str, typer.Argument(help="The consumer.")],
    threshold: Annotated[float, typer.Argument(help="Largest relative drop the gate accepts.")],
    store: StoreOpt,
) -> None:
    """Change one consumer's threshold."""
    from bcemb.store.consumers import ConsumerRegistry

    with _errors():
        c = ConsumerRegistry(store).set_threshold(name, threshold)
    typer.echo(f"consumer {c.name}: threshold {c.threshold:.1%}")


@consumers_app.command("set-rule")
def set_rule(
    name: Annotated[str, typer.Argument(help="The consumer.")],
    rule: Annotated[str, typer.Argument(help="interval, point, or default (the gate's).")],
    store: StoreOpt,
) -> None:
    """Change one consumer's decision rule."""
    from bcemb.store.consumers import ConsumerRegistry

    with _errors():
        c = ConsumerRegistry(store).set_rule(name, None if rule == "default" else rule)
    typer.echo(f"consumer {c.name}: rule {c.rule or 'default'}")


def _finish_gate(report: Any, report_path: Path | None) -> None:
    from bcemb.store.gate import EXIT_REFUSED, format_report

    if report_path is not None:
        report.write(report_path)
    typer.echo(format_report(report))
    if report_path is not None:
        typer.echo(f"report written to {report_path}")
    if not report.passed:
        raise typer.Exit(EXIT_REFUSED)


def gate(
    run: Annotated[Path, typer.Argument(help="Candidate training-run folder.")],
    store: StoreOpt,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the decision as JSON here (for CI).")
    ] = None,
    rule: RuleOpt = None,
    resamples: ResamplesOpt = 1000,
    bootstrap_seed: BootstrapSeedOpt = 0,
) -> None:
    """Dry run of ``publish --gate``: judge the run against every registered consumer.

    Exit status 0 when every consumer keeps its metric within its threshold, 3 when the gate
    refuses, 1 on errors. Nothing is written to the store.
    """
    from bcemb.store.gate import gate_run

    with _errors():
        result = gate_run(run, store, rule=rule, resamples=resamples, seed=bootstrap_seed)
    _finish_gate(result, report)


def register(app: typer.Typer) -> None:
    """Mount the consumer, gate and doctor commands on the ``bcemb store`` app."""
    app.add_typer(consumers_app, name="consumers")
    app.command("gate")(gate)
    try:
        from bcemb.store.doctor_cli import doctor
    except ImportError:  # pragma: no cover - while the doctor is being written
        return
    app.command("doctor")(doctor)
