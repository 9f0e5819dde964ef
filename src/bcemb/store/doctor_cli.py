"""``bcemb store doctor FILE --store S``: which space a file of vectors lives in."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["doctor"]


def doctor(
    file: Annotated[Path, typer.Argument(help="Parquet file (or folder of parts): kind, id, embedding.")],
    store: Annotated[Path, typer.Option("--store", "-s", help="Store directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Tell which version's space the vectors of a file live in, from their residuals.

    Works without the file's metadata. Exit status 3 when the file mixes spaces or holds
    truncated vectors of a longer version, 0 otherwise, 1 on errors.
    """
    from bcemb.store.cli import _errors, _table
    from bcemb.store.doctor import diagnose
    from bcemb.store.gate import EXIT_REFUSED

    with _errors():
        report = diagnose(file, store)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1, default=lambda v: None))
    else:
        rows = [
            [
                h.name,
                "yes" if h.compatible else "no",
                h.rows,
                h.exact_rows,
                "n/a" if math.isnan(h.median_residual) else f"{h.median_residual:.3g}",
                h.space or "-",
            ]
            for h in report.hypotheses
        ]
        typer.echo(_table(rows, ["space", "compatible", "rows", "exact", "median residual", "fingerprint"]))
        for m in report.messages:
            typer.echo(m)
        typer.echo(f"{file}: {report.rows} rows of dimension {report.dim}: {report.verdict}")
    if report.verdict in ("mixed", "truncated"):
        raise typer.Exit(EXIT_REFUSED)
