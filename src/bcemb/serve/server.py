"""Running the app under uvicorn with limits on what connections may hold.

uvicorn bounds idle keep-alive connections, header size (h11) and connections in flight
(``limit_concurrency``: 503 beyond), but has no deadline for a request's headers: a client
sending one byte every few seconds (slowloris) holds its connection forever. The protocol
below closes a connection whose next request head is not complete within ``header_timeout``
seconds of the connection opening or of the previous answer. Body and write deadlines are the
app's (see :class:`bcemb.serve.limits.ServiceLimits`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from bcemb.serve.logs import log_config
from bcemb.serve.limits import ServerLimits

logger = logging.getLogger(__name__)

__all__ = ["GuardedH11Protocol", "bind", "raise_open_file_limit", "run"]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # noqa: D102
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:  # noqa: D102
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request head was complete: its cycle started
            self._disarm()

    def on_response_complete(self) -> None:  # noqa: D102
        self._arm()  # before: a pipelined request handled inside disarms it again
        super().on_response_complete()
        if self.transport.is_closing():
            self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            logger.info("closed a connection that sent no complete request head in time")
            self.transport.close()


def raise_open_file_limit() -> int:
    """Raise the soft limit of open files to the hard one; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft)


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (so that a busy port fails before anything starts).

    Raises:
        OSError: The address cannot be bound; the message names it.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        raise OSError(f"cannot resolve host {host!r}: {err}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        reason = err.strerror or str(err)
        raise OSError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def run(
    app: Any,
    sock: socket.socket,
    limits: ServerLimits | None = None,
    *,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve ``app`` on a bound socket with uvicorn until interrupted.

    Args:
        app: An ASGI app.
        sock: From :func:`bind`.
        limits: Connection limits; the defaults of :class:`ServerLimits` if None.
        log_level: uvicorn's log level.
        access_log: Log one line per request.
    """
    import uvicorn

    limits = limits or ServerLimits()
    protocol = type(
        "GuardedH11", (GuardedH11Protocol,), {"header_timeout": float(limits.header_timeout)}
    )
    config = uvicorn.Config(
        app,
        http=protocol,
        lifespan="on",
        log_config=log_config(log_level),
        log_level=log_level,
        access_log=access_log,
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=limits.max_header_bytes,
        backlog=limits.backlog,
        server_header=False,
        date_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])
