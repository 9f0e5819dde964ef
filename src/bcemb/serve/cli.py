"""``bcemb serve --store DIR``: run the HTTP service of a store with uvicorn.

Imports only typer and the limits at module level, so that ``bcemb --help`` stays fast.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer

from bcemb.serve.limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IDS,
    ServerLimits,
    ServiceLimits,
)

logger = logging.getLogger(__name__)

__all__ = ["app", "serve"]

_SERVICE = ServiceLimits()
_SERVER = ServerLimits()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def serve(
    store: Annotated[Path, typer.Option("--store", "-s", help="Store directory.")],
    host: Annotated[
        str, typer.Option(help="Interface to bind; loopback unless told otherwise.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0-65535).")] = 8000,
    max_ids: Annotated[
        int, typer.Option(help="Most ids per request (more: 413).")
    ] = DEFAULT_MAX_IDS,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest request body (larger: 413).")
    ] = DEFAULT_MAX_BODY_BYTES,
    refresh_seconds: Annotated[
        float, typer.Option(help="How often the background watcher looks for a new publish (<0: never).")
    ] = 0.25,
    max_connections: Annotated[
        int, typer.Option(help="Connections and requests in flight (beyond: 503).")
    ] = _SERVER.max_connections,
    header_timeout: Annotated[
        float, typer.Option(help="Seconds for a request head to arrive (slower: disconnected).")
    ] = _SERVER.header_timeout,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds for each piece of a request body (slower: 408).")
    ] = _SERVICE.body_timeout,
    send_timeout: Annotated[
        float, typer.Option(help="Seconds a client may leave an answer unread (then dropped).")
    ] = _SERVICE.send_timeout,
    docs: Annotated[
        bool, typer.Option("--docs", help="Serve /docs, /redoc and /openapi.json.")
    ] = False,
    blas_threads: Annotated[
        int,
        typer.Option(help="BLAS threads of the server process (requests run in parallel threads)."),
    ] = 1,
    materialize: Annotated[
        str,
        typer.Option(
            help="Older versions kept materialized in memory, so that their answers need no "
            "product: auto (every older version within --materialize-mb), all, none, or "
            "versions like 0,1."
        ),
    ] = "auto",
    materialize_mb: Annotated[
        float, typer.Option(help="Memory --materialize auto may use (MiB).")
    ] = 1024.0,
    json_cache_mb: Annotated[
        float,
        typer.Option(
            help="Memory for the JSON text of every row of the materialized versions and the "
            "latest (JSON answers of them are then a join); 0: format every answer anew (MiB)."
        ),
    ] = 1024.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log one line per request.")] = False,
) -> None:
    """Serve ver-j compatible embeddings of a store over HTTP.

    Endpoints: GET /health, GET /versions, POST /embeddings.
    """
    if not 0 <= port <= 65535:
        raise _fail(f"--port must be between 0 and 65535, got {port}", 2)
    try:
        import orjson  # noqa: F401
        import uvicorn  # noqa: F401

        from bcemb.serve.server import bind, raise_open_file_limit, run
    except ImportError:
        raise _fail("serving needs the 'serve' extra: pip install 'bcemb[serve]'") from None
    try:  # first: a busy port fails at once, before the store is opened
        sock = bind(host, port)
    except OSError as err:
        raise _fail(str(err)) from None
    from bcemb.serve.app import create_app
    from bcemb.serve.views import ViewPolicy
    from bcemb.store import StoreError

    # The ~350k objects of the imports (torch, pyarrow, ...) live as long as the process: out of
    # the collector's sight, a full collection during serving takes microseconds, not ~0.2 s.
    # (Before the store is opened, so that a snapshot swapped out later is still collected.)
    gc.collect()
    gc.freeze()
    try:
        limits = ServiceLimits(
            max_ids=max_ids,
            max_body_bytes=max_body_bytes,
            body_timeout=body_timeout,
            send_timeout=send_timeout,
        ).check()
        if not (max_connections > 0 and header_timeout > 0):
            raise ValueError("--max-connections and --header-timeout must be positive")
        views = ViewPolicy.parse(materialize, materialize_mb, json_cache_mb)
        application = create_app(
            store, limits=limits, refresh_seconds=refresh_seconds, docs=docs, views=views
        )
    except (StoreError, ValueError, OSError) as err:
        sock.close()
        raise _fail(str(err)) from None
    files = raise_open_file_limit()
    if max_connections > files - 64:
        typer.echo(
            f"warning: --max-connections {max_connections} is near the open-file limit {files}",
            err=True,
        )
    if not _is_loopback(host):
        typer.echo(
            f"warning: binding {host} makes the service reachable from other machines", err=True
        )
    # Each request's product is small; several BLAS threads per request only contend with the
    # server's own request threads (and anything else on the machine).
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=blas_threads, user_api="blas")
    bound_port = sock.getsockname()[1]
    latest = application.store.latest
    typer.echo(f"serving {store} (latest version {latest}) on http://{host}:{bound_port}", err=True)
    server_limits = ServerLimits(max_connections=max_connections, header_timeout=header_timeout)
    run(application, sock, server_limits, log_level=log_level, access_log=access_log)


app = typer.Typer(add_completion=False, help="Serve an embedding store over HTTP.")
app.command()(serve)
