"""The HTTP service of an embedding store (optional extra ``bcemb[serve]``: FastAPI, uvicorn).

Only :mod:`bcemb.store` is used; the app maps requests to :class:`~bcemb.store.EmbeddingStore`
calls. FastAPI is imported when :func:`create_app` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bcemb.serve.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from bcemb.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
