"""The FastAPI app over an :class:`~bcemb.store.EmbeddingStore`.

Endpoints:

- ``GET /health``: ``{"status": "ok", "latest": k, "manifest": ...}``.
- ``GET /versions``: the versions with their dimension, parent, method and state.
- ``POST /embeddings`` with ``{"ids": [...], "version": j, "kind": "user"}``: the vectors and
  the version they are in. ``"encoding": "base64"`` returns the float32 matrix as
  little-endian bytes in base64 (much faster than JSON numbers for large requests).

Errors: unknown ids or version -> 404 naming them; a malformed body -> 422; too many ids or
too large a body -> 413. The app picks up a newly published version on its own (it checks
the store pointer at most once per ``refresh_seconds``); each request is answered from one
consistent snapshot of the store.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from bcemb.store import EmbeddingStore, StoreError, UnknownIdsError, UnknownVersionError

logger = logging.getLogger(__name__)

__all__ = ["create_app", "EmbeddingsRequest", "DEFAULT_MAX_IDS", "DEFAULT_MAX_BODY_BYTES"]

DEFAULT_MAX_IDS = 10_000
DEFAULT_MAX_BODY_BYTES = 4 << 20  # 4 MiB: 10,000 ids of up to a few hundred bytes each


class EmbeddingsRequest(BaseModel):
    """Body of ``POST /embeddings``.

    Attributes:
        ids: Original node ids (strings or integers).
        version: Target version ``j``; null for the latest.
        kind: ``"user"`` or ``"item"``.
        encoding: ``"json"`` (nested lists) or ``"base64"`` (raw little-endian float32).
    """

    model_config = ConfigDict(extra="forbid")

    ids: list[StrictStr | StrictInt] = Field(description="Original node ids.")
    version: StrictInt | None = Field(default=None, description="Target version; null for the latest.")
    kind: Literal["user", "item"] = "user"
    encoding: Literal["json", "base64"] = "json"


class _StoreHolder:
    """The current store snapshot; swapped for a new one after a publish."""

    def __init__(self, root: Path, *, verify: bool, refresh_seconds: float) -> None:
        self.store = EmbeddingStore(root, verify=verify)
        self._refresh = refresh_seconds
        self._next_check = time.monotonic() + refresh_seconds
        self._lock = threading.Lock()

    def current(self) -> EmbeddingStore:
        if self._refresh >= 0 and time.monotonic() >= self._next_check:
            with self._lock:
                if time.monotonic() >= self._next_check:
                    self._next_check = time.monotonic() + self._refresh
                    if self.store.is_stale():
                        try:
                            self.store = self.store.reload()
                            logger.info("now serving %s (latest version %d)", self.store.manifest.name, self.store.latest)
                        except StoreError as err:
                            logger.error("keeping %s: the new store state cannot be opened: %s", self.store.manifest.name, err)
        return self.store


class _BodyLimit:
    """ASGI middleware answering 413 to request bodies over ``max_bytes``."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(
    store_dir: str | Path,
    *,
    max_ids: int = DEFAULT_MAX_IDS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    verify: bool = True,
    refresh_seconds: float = 1.0,
) -> FastAPI:
    """Build the HTTP app of a store (the store is opened now, so errors surface early).

    Args:
        store_dir: The store directory.
        max_ids: Most ids per request (more -> 413). Default 10,000.
        max_body_bytes: Largest request body (larger -> 413). Default 4 MiB.
        verify: Check the store's checksums when opening it (and after each publish).
        refresh_seconds: How often to look for a new publish; negative to never.

    Returns:
        The FastAPI app.

    Example:
        >>> import uvicorn
        >>> uvicorn.run(create_app("store"), host="127.0.0.1", port=8000)
    """
    if max_ids < 1 or max_body_bytes < 1:
        raise ValueError(f"max_ids and max_body_bytes must be positive, got {max_ids}, {max_body_bytes}")
    holder = _StoreHolder(Path(store_dir), verify=verify, refresh_seconds=refresh_seconds)
    app = FastAPI(
        title="bcemb embedding store",
        description="Backward compatible embeddings of any version, computed on the fly from the latest.",
    )
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    app.state.holder = holder

    @app.get("/health")
    def health() -> dict[str, Any]:
        store = holder.current()
        return {"status": "ok", "latest": store.latest, "manifest": store.manifest.name}

    @app.get("/versions")
    def versions() -> dict[str, Any]:
        store = holder.current()
        return {"latest": store.latest, "versions": store.describe()}

    @app.post("/embeddings", response_model=None)
    def embeddings(request: EmbeddingsRequest) -> Response:
        if len(request.ids) > max_ids:
            return JSONResponse(
                {"detail": f"too many ids: {len(request.ids)} > {max_ids} per request; split the request"},
                status_code=413,
            )
        store = holder.current()  # one snapshot for the whole request
        try:
            vectors = store.get(request.ids, version=request.version, kind=request.kind)
        except UnknownVersionError as err:
            return JSONResponse({"detail": str(err), "versions": err.available}, status_code=404)
        except UnknownIdsError as err:
            return JSONResponse({"detail": str(err), "unknown_ids": err.missing[:100]}, status_code=404)
        version = store.latest if request.version is None else request.version
        head = {
            "version": version,
            "latest": store.latest,
            "kind": request.kind,
            "dim": int(vectors.shape[1]),
            "ids": [str(i) for i in request.ids],
        }
        if request.encoding == "base64":
            head.update(
                dtype="<f4", shape=list(vectors.shape),
                vectors_base64=base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode(),
            )
        else:
            head["vectors"] = vectors.tolist()
        # json.dumps directly: FastAPI's generic encoder walks every float and is far slower.
        return Response(json.dumps(head, separators=(",", ":")), media_type="application/json")

    return app
