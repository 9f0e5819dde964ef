"""``bcemb store ...``: publish, list, read, export and check a keep-latest embedding store.

Every command takes ``--store DIR``, prints where its output went and exits with status 1
and a one-line message on failure.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from bcemb.cli_options import one_of
from bcemb.store.errors import StoreError
from bcemb.store.gate_cli import BootstrapSeedOpt, ResamplesOpt, RuleOpt

logger = logging.getLogger(__name__)

__all__ = ["app"]

app = typer.Typer(
    help="The keep-latest embedding store: publish runs, serve any old version on the fly.",
    no_args_is_help=True,
    add_completion=False,
)

def _store_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} is a file, not a store directory", param_hint="--store")
    return path


StoreOpt = Annotated[Path, typer.Option("--store", "-s", callback=_store_dir, help="Store directory.")]
VersionOpt = Annotated[
    int | None, typer.Option("--version", "-v", help="Target version j (default: latest).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn library errors into a message and exit status 1."""
    try:
        yield
    except Exception as err:
        from bcemb.data.graph import DataError  # imported late: ``--help`` must stay fast

        handled = (StoreError, DataError, ValueError, TypeError, KeyError, OSError, ImportError)
        if not isinstance(err, handled):
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(1) from None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


@app.command()
def publish(
    run: Annotated[
        Path, typer.Argument(help="Training-run folder (config.json, graph/, version_<k>/).")
    ],
    store: StoreOpt,
    keep_all: Annotated[
        bool, typer.Option("--keep-all", help="Keep every version's embeddings and model.")
    ] = False,
    probe_fraction: Annotated[
        float, typer.Option(help="Share of nodes kept as probes per version.")
    ] = 0.01,
    min_probes: Annotated[int, typer.Option(help="At least this many probes per version.")] = 256,
    rows_per_part: Annotated[
        int, typer.Option(help="Rows per stored Parquet partition.")
    ] = 131_072,
    seed: Annotated[int, typer.Option(help="Seed of the probe sampling.")] = 0,
    check_model: Annotated[
        bool, typer.Option(help="Check that the model reproduces the embeddings.")
    ] = True,
    gate: Annotated[
        bool, typer.Option("--gate", help="Refuse (exit 3) if a registered consumer would break.")
    ] = False,
    consumers: Annotated[
        bool,
        typer.Option(help="Into an empty store: train and register the task and retrieval consumers."),
    ] = True,
    consumer_threshold: Annotated[
        float, typer.Option(help="Threshold (relative drop) of the consumers trained here.")
    ] = 0.02,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the gate's decision as JSON here.")
    ] = None,
    rule: RuleOpt = None,
    resamples: ResamplesOpt = 1000,
    bootstrap_seed: BootstrapSeedOpt = 0,
) -> None:
    """Publish the run's latest finished version (and its history into an empty store)."""
    from bcemb.store.gate import GateRefused, publish_gated
    from bcemb.store.gate_cli import _finish_gate

    with _errors():
        try:
            m, decision, registered = publish_gated(
                run,
                store,
                gate=gate,
                consumers=consumers,
                report_path=report,
                consumer_options={"threshold": consumer_threshold},
                rule=rule,
                resamples=resamples,
                bootstrap_seed=bootstrap_seed,
                keep_all=keep_all,
                probe_fraction=probe_fraction,
                min_probes=min_probes,
                rows_per_part=rows_per_part,
                seed=seed,
                check_model=check_model,
            )
        except GateRefused as refused:
            typer.echo(f"error: {refused}; nothing was published", err=True)
            _finish_gate(refused.report, None)
    if decision is not None:
        typer.echo(format_report_text(decision))
    typer.echo(f"published version {m.latest} of {run} to {store} ({m.name})")
    if registered:
        typer.echo(f"registered {len(registered)} consumer(s) on version 0: {', '.join(registered)}")


@app.command("ls")
def ls(store: StoreOpt, as_json: JsonOpt = False) -> None:
    """List the store's versions."""
    from bcemb.store.store import EmbeddingStore

    with _errors():
        s = EmbeddingStore(store, verify=False)
    rows = s.describe()
    if as_json:
        typer.echo(
            json.dumps(
                {"latest": s.latest, "manifest": s.manifest.name, "versions": rows}, indent=1
            )
        )
        return
    table = [
        [
            f"{r['version']}{'*' if r['version'] == s.latest else ''}",
            r["parent"] if r["parent"] is not None else "-",
            r["dim"],
            r["transform"] or "-",
            r["applied"],
            r["embeddings"],
            r["model"],
            r["num_probes"],
            r["method"],
            r["created"],
        ]
        for r in rows
    ]
    typer.echo(
        _table(
            table,
            [
                "version",
                "parent",
                "dim",
                "transform",
                "applied",
                "embeddings",
                "model",
                "probes",
                "method",
                "created",
            ],
        )
    )
    typer.echo(
        f"{store}: latest version {s.latest} (*), {s.num_nodes('user')} users, "
        f"{s.num_nodes('item')} items, {s.manifest.name}"
    )


@app.command()
def get(
    ids: Annotated[list[str], typer.Argument(help="Original node ids.")],
    store: StoreOpt,
    version: VersionOpt = None,
    kind: Annotated[str, typer.Option("--kind", "-k", callback=one_of("--kind", ("user", "item")), help="user | item.")] = "user",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write .json or .parquet here instead of stdout."),
    ] = None,
) -> None:
    """Print (or write) ver-j compatible embeddings of stored nodes."""
    from bcemb.store import io as sio
    from bcemb.store.io import embedding_table
    from bcemb.store.store import EmbeddingStore

    with _errors():
        s = EmbeddingStore(store)
        vectors = s.get(ids, version=version, kind=kind)
        j = s.latest if version is None else version
        payload = {
            "version": j,
            "space": s.space(j),
            "kind": kind,
            "ids": ids,
            "vectors": vectors.tolist(),
        }
        if out is None:
            typer.echo(json.dumps(payload))
            return
        if out.suffix == ".parquet":
            out.parent.mkdir(parents=True, exist_ok=True)
            out.unlink(missing_ok=True)
            sio.write_table(
                out,
                embedding_table(kind, ids, vectors),
                {"bcemb.version": str(j), "bcemb.space": s.space(j)},
            )
        elif out.suffix == ".json":
            sio.atomic_write_bytes(out, json.dumps(payload).encode())
        else:
            raise ValueError(f"--out must end in .json or .parquet, got {out}")
    typer.echo(f"wrote {len(ids)} {kind} embeddings of version {j} to {out}")


@app.command()
def export(
    store: StoreOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder of Parquet partitions.")],
    version: VersionOpt = None,
    engine: Annotated[str, typer.Option(callback=one_of("--engine", ("single", "dask")), help="single | dask.")] = "single",
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address (default: a local cluster).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Threads (single) or local Dask workers.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output folder.")
    ] = False,
) -> None:
    """Export every stored node's ver-j compatible embeddings as Parquet."""
    from bcemb.store.export import export_embeddings

    with _errors():
        r = export_embeddings(
            store,
            out,
            version=version,
            engine=engine,
            scheduler=scheduler,
            workers=workers,
            overwrite=overwrite,
        )
    typer.echo(
        f"wrote {r.rows} rows of version {r.version} (dim {r.dim}) to {r.path} in {r.parts} parts "
        f"({r.seconds:.2f} s, {r.rows_per_second:,.0f} rows/s, engine {r.engine})"
    )


@app.command()
def check(
    store: StoreOpt,
    fail_above: Annotated[
        float | None,
        typer.Option(help="Exit 1 when an older version's mean alignment error exceeds this."),
    ] = None,
    as_json: JsonOpt = False,
    hop_budget: Annotated[
        float, typer.Option(help="Chain error allowed per hop, relative to the norm (same-graph probe).")
    ] = 0.2,
) -> None:
    """Verify every stored file and report the chain's alignment error on each version's probes."""
    from bcemb.store.same_graph import chain_budget, recommendation
    from bcemb.store.store import EmbeddingStore, check_store

    with _errors():
        report = check_store(store)  # checksums first; reports every bad file, never crashes
    hops, advice = [], None
    if report.ok:
        with _errors():
            opened = EmbeddingStore(store, verify=False)
            published = {v.version: v.relative_error for v in report.versions}
            hops = chain_budget(opened, per_hop=hop_budget, published=published)
            advice = recommendation(hops, opened)
    too_high = [
        v.version
        for v in report.versions
        if fail_above is not None and v.version < report.latest and not v.mean_error <= fail_above
    ]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "manifest": report.manifest,
                    "latest": report.latest,
                    "ok": report.ok,
                    "problems": list(report.problems),
                    "model_check": report.model_check,
                    "versions": [v.__dict__ for v in report.versions],
                    "same_graph": [h.__dict__ for h in hops],
                    "recommendation": advice,
                },
                indent=1,
            )
        )
    else:
        rows = [
            [
                v.version,
                v.dim,
                v.num_probes,
                f"{v.mean_error:.4g}",
                f"{v.max_error:.4g}",
                f"{v.relative_error:.3%}",
            ]
            for v in report.versions
        ]
        typer.echo(_table(rows, ["version", "dim", "probes", "mean L2", "max L2", "relative"]))
        if hops:
            typer.echo("same-graph probe (M_j on the latest graph): the chain's own error vs the graph's drift")
            typer.echo(
                _table(
                    [
                        [
                            h.version,
                            h.hops,
                            h.num_probes,
                            f"{h.chain_error:.4g}",
                            f"{h.chain_relative:.3%}",
                            f"{h.drift_relative:+.3%}",
                            f"{h.budget:.1%}",
                            "OVER" if h.over_budget else "ok",
                        ]
                        for h in hops
                    ],
                    ["version", "hops", "probes", "chain L2", "chain rel", "drift rel", "budget", ""],
                )
            )
        if advice:
            typer.echo(f"recommendation: {advice}")
        if report.model_check is not None and not report.model_check.get("ok", True):
            typer.echo(
                f"warning: the latest model does not reproduce its embeddings ({report.model_check})"
            )
        for p in report.problems:
            typer.echo(f"problem: {p}", err=True)
        typer.echo(
            f"checked {store} ({report.manifest}): "
            + ("all files intact" if report.ok else f"{len(report.problems)} problem(s)")
        )
    if too_high:
        typer.echo(f"error: alignment error above {fail_above} for versions {too_high}", err=True)
    if not report.ok or too_high:
        raise typer.Exit(1)


@app.command()
def usage(store: StoreOpt, as_json: JsonOpt = False) -> None:
    """Disk usage of keep-latest (this store) next to keep-all."""
    from bcemb.store.store import EmbeddingStore

    with _errors():
        u = EmbeddingStore(store, verify=False).usage()
    if as_json:
        typer.echo(
            json.dumps(
                {**u.__dict__, "versions": [v.__dict__ for v in u.versions], "saving": u.saving},
                indent=1,
            )
        )
        return
    rows = [
        [
            v.version,
            _size(v.transform_bytes),
            _size(v.probe_bytes),
            _size(v.embedding_bytes) + ("" if v.embeddings_kept else " (retired, est.)"),
            _size(v.model_bytes) + ("" if v.model_kept else " (retired)"),
        ]
        for v in u.versions
    ]
    typer.echo(_table(rows, ["version", "transform", "probes", "embeddings", "model"]))
    typer.echo(
        f"stored {_size(u.stored_bytes)}; keep-latest {_size(u.keep_latest_bytes)} vs keep-all "
        f"{_size(u.keep_all_bytes)} ({u.saving:.1%} saved)"
    )


@app.command()
def retire(
    store: StoreOpt,
    version: Annotated[
        int, typer.Option("--version", "-v", help="Older version whose embeddings to drop.")
    ],
) -> None:
    """Remove an older version's embeddings and model (its transform and probes stay)."""
    from bcemb.store.publish import retire as _retire

    with _errors():
        m = _retire(store, version)
    typer.echo(f"retired the embeddings of version {version} in {store} ({m.name})")


@app.command()
def gc(store: StoreOpt) -> None:
    """Delete files that interrupted publishes left behind (restores a missing CURRENT first)."""
    from bcemb.store.publish import collect_garbage

    from bcemb.store.manifest import POINTER, read_pointer

    had_pointer = (store / POINTER).exists()
    with _errors():
        removed = collect_garbage(store)
        pointer = read_pointer(store)
    if not had_pointer and pointer is not None:
        typer.echo(f"restored {store / POINTER}: it was missing; it now points at {pointer[0]}")
    typer.echo(f"removed {len(removed)} leftover file(s) from {store}")


def format_report_text(report: Any) -> str:
    """The gate's table (see :func:`bcemb.store.gate.format_report`)."""
    from bcemb.store.gate import format_report

    return format_report(report)


def _mount_gate() -> None:
    from bcemb.store.gate_cli import register

    register(app)


_mount_gate()
