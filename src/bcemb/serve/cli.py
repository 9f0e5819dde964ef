"""``bcemb serve --store DIR``: run the HTTP service of a store with uvicorn."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer

from bcemb.serve.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IDS

logger = logging.getLogger(__name__)

__all__ = ["app", "serve"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    store: Annotated[Path, typer.Option("--store", "-s", help="Store directory.")],
    host: Annotated[
        str, typer.Option(help="Interface to bind; loopback unless told otherwise.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_ids: Annotated[
        int, typer.Option(help="Most ids per request (more: 413).")
    ] = DEFAULT_MAX_IDS,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest request body (larger: 413).")
    ] = DEFAULT_MAX_BODY_BYTES,
    refresh_seconds: Annotated[
        float, typer.Option(help="How often to look for a new publish (<0: never).")
    ] = 1.0,
    blas_threads: Annotated[
        int,
        typer.Option(help="BLAS threads of the server process (requests run in parallel threads)."),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve ver-j compatible embeddings of a store over HTTP.

    Endpoints: GET /health, GET /versions, POST /embeddings.
    """
    from bcemb.serve.app import create_app
    from bcemb.store import StoreError

    try:
        import uvicorn
    except ImportError:
        typer.echo("error: serving needs the 'serve' extra: pip install 'bcemb[serve]'", err=True)
        raise typer.Exit(1) from None
    try:
        application = create_app(
            store, max_ids=max_ids, max_body_bytes=max_body_bytes, refresh_seconds=refresh_seconds
        )
    except (StoreError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    if not _is_loopback(host):
        typer.echo(
            f"warning: binding {host} makes the service reachable from other machines", err=True
        )
    # Each request's product is small; several BLAS threads per request only contend with the
    # server's own request threads (and anything else on the machine).
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=blas_threads, user_api="blas")
    latest = application.state.holder.store.latest
    typer.echo(f"serving {store} (latest version {latest}) on http://{host}:{port}", err=True)
    uvicorn.run(application, host=host, port=port, log_level=log_level)


app = typer.Typer(add_completion=False, help="Serve an embedding store over HTTP.")
app.command()(serve)
