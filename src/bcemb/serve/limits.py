"""Limits of the HTTP service (a light module: the CLI reads them without importing the app)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_IDS", "ServerLimits", "ServiceLimits"]

DEFAULT_MAX_IDS = 10_000
DEFAULT_MAX_BODY_BYTES = 4 << 20  # 4 MiB: 10,000 ids of up to a few hundred bytes each


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may cost the app.

    Attributes:
        max_ids: Most ids per request (more -> 413).
        max_body_bytes: Largest request body (larger -> 413).
        body_timeout: Seconds to wait for each piece of a request body (slower -> 408).
        send_timeout: Seconds a client may leave a response piece unread before the
            connection is closed (a client that never reads costs one piece, then nothing).
        chunk_bytes: Responses larger than this are computed and sent in pieces of about this
            size, so a large answer never sits whole in memory.
    """

    max_ids: int = DEFAULT_MAX_IDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout: float = 10.0
    send_timeout: float = 30.0
    chunk_bytes: int = 256 << 10

    def check(self) -> ServiceLimits:
        """The limits themselves, after checking that each is positive."""
        for name in ("max_ids", "max_body_bytes", "body_timeout", "send_timeout", "chunk_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        return self


@dataclass(frozen=True)
class ServerLimits:
    """What the server (uvicorn) lets connections hold.

    Attributes:
        header_timeout: Seconds from connection (or the end of the last response) to the end
            of the next request's headers; slower clients are disconnected (slowloris).
        keep_alive: Seconds an idle keep-alive connection stays open.
        max_connections: Connections and requests in flight; beyond, requests get 503.
        max_header_bytes: Largest request head (h11's incomplete event size).
        backlog: Pending connections the kernel queues.
    """

    header_timeout: float = 10.0
    keep_alive: float = 5.0
    max_connections: int = 1000
    max_header_bytes: int = 16 << 10
    backlog: int = 2048
