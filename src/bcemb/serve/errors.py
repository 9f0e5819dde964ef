"""The one error type of the HTTP app: a status and a message for the client."""

from __future__ import annotations

from typing import Any

__all__ = ["HTTPProblem", "clip"]


class HTTPProblem(Exception):
    """A request the app answers with a 4xx/5xx status and ``{"detail": message, **extra}``.

    Attributes:
        status: The HTTP status.
        detail: What is wrong, for the client.
        extra: More JSON fields of the answer.
    """

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (marked), so an answer never echoes a huge input."""
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"
