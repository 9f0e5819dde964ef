"""``bcemb adapt``: a post-hoc backward transform between vectors of two model versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["adapt"]


def adapt(
    old: Annotated[Path, typer.Option(help="Parquet of the older version's vectors (what consumers use).")],
    new: Annotated[Path, typer.Option(help="Parquet of the newer version's vectors.")],
    family: Annotated[str, typer.Option(help="procrustes, linear, low-rank or mlp.")] = "procrustes",
    store: Annotated[Optional[Path], typer.Option(help="Publish NEW + B as the store's next version (the store's latest must be OLD; an empty store gets OLD as version 0).")] = None,
    id_col: Annotated[str, typer.Option(help="Id column of both files.")] = "id",
    vector_col: Annotated[str, typer.Option(help="List column of the vectors (else: one numeric column per dimension).")] = "vector",
    label: Annotated[Optional[str], typer.Option(help="Label column (in OLD, else NEW) for the linear-probe report.")] = None,
    holdout: Annotated[float, typer.Option(help="Share of the shared ids held out for the report.")] = 0.2,
    rank: Annotated[int, typer.Option(help="Rank of the low-rank family.")] = 16,
    hidden: Annotated[int, typer.Option(help="Hidden width of the mlp family.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the split and of the Adam fit (mlp).")] = 0,
    report: Annotated[Optional[Path], typer.Option(help="Also write the report as JSON here.")] = None,
) -> None:
    """Fit B: NEW -> OLD on the ids both files share, report what a consumer of OLD keeps, publish."""
    from bcemb.compat.adapt import FAMILIES
    from bcemb.compat.adapt import adapt as fit

    if family not in FAMILIES:
        raise typer.BadParameter(f"unknown family {family!r}; families: {', '.join(FAMILIES)}", param_hint="--family")
    try:
        import torch

        from bcemb.compat.vectors import read_vectors
        from bcemb.store.errors import StoreError

        torch.set_num_threads(min(torch.get_num_threads(), 2))
        old_v = read_vectors(old, id_col=id_col, vector_col=vector_col, label_col=label if label and _has(old, label) else None)
        new_v = read_vectors(new, id_col=id_col, vector_col=vector_col, label_col=label if label and not _has(old, label) else None)
        transform, rep = fit(old_v, new_v, family, holdout=holdout, seed=seed, rank=rank, hidden=hidden)
        published = None
        if store is not None:
            from bcemb.compat.publish import publish_adapted

            published = publish_adapted(store, old_v, new_v, transform, family=family, report=rep.to_dict())
    except (ValueError, OSError, StoreError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    d = rep.to_dict()
    typer.echo(f"{family}: B maps {d['new_dim']} -> {d['old_dim']} dims, fitted on {d['fit_ids']:,} of "
               f"{d['shared']:,} shared ids ({d['fit']['method']}), held out {d['holdout_ids']:,}")
    typer.echo(f"held-out alignment: relative error {d['holdout_relative_error']:.4f}, MSE {d['holdout_mse']:.4g}")
    for kind, r in d["retrieval"].items():
        typer.echo(f"retrieval ({kind}s, exact cosine index of {r['index_size']:,} OLD vectors): "
                   f"Recall@10 vs old-vs-old neighbours {r['neighbour_recall@10']:.4f}, "
                   f"own old vector in top 10 {r['self_recall@10']:.4f}")
    if d["probe"]:
        p = d["probe"]
        typer.echo(f"linear probe on {label!r}: accuracy {p['accuracy_transformed']:.4f} on B(new) vs "
                   f"{p['accuracy_old']:.4f} on old ({p['ratio']:.3f} kept)")
    if report is not None:
        report.write_text(json.dumps(d, indent=1) + "\n")
    if published is not None:
        typer.echo(f"published version {published.latest} (no model) to {store}")


def _has(path: Path, column: str) -> bool:
    import pyarrow.parquet as pq

    try:
        return column in pq.read_schema(path).names
    except Exception:  # noqa: BLE001 - read_vectors reports unreadable files
        return False
