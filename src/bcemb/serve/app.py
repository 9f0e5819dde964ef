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
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from bcemb.store import EmbeddingStore, StoreError, UnknownIdsError, UnknownVersionError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_IDS",
    "EmbeddingsRequest",
    "create_app",
    "json_matrix",
]

from bcemb.serve.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IDS  # noqa: E402


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
    version: StrictInt | None = Field(
        default=None, description="Target version; null for the latest."
    )
    kind: Literal["user", "item"] = "user"
    encoding: Literal["json", "base64"] = "json"


def json_matrix(vectors: np.ndarray) -> str:
    """A float32 matrix as a JSON array of arrays, with the shortest float32 digits.

    Arrow formats the numbers in C++ (``json.dumps`` of ``tolist()`` is about five times slower
    and writes each float32 with the 17 digits of a double, twice the bytes); parsing the
    text as float64 and rounding to float32 gives back the exact values.

    Shapes:
        vectors: ``[N, D]``, finite.
    """
    n, d = vectors.shape
    if n == 0 or d == 0:
        return "[" + ",".join(["[]"] * n) + "]"
    flat = pc.cast(
        pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)), pa.large_string()
    )
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int64))
    comma, bracket = pa.scalar(",", pa.large_string()), pa.scalar("],[", pa.large_string())
    rows = pc.binary_join(pa.LargeListArray.from_arrays(offsets, flat), comma)
    whole = pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array([0, n], pa.int64()), rows), bracket
    )
    return "[[" + whole[0].as_py() + "]]"


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
                            logger.info(
                                "now serving %s (latest version %d)",
                                self.store.manifest.name,
                                self.store.latest,
                            )
                        except StoreError as err:
                            logger.error(
                                "keeping %s: the new store state cannot be opened: %s",
                                self.store.manifest.name,
                                err,
                            )
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
        if length is not None and length.isdigit():
            if int(length) > self.max_bytes:
                await self._reject(send)
                return
            await self.app(scope, receive, send)  # the server holds the body to its declared length
            return
        # No declared length (chunked): buffer up to the limit, then replay the body. Raising
        # from ``receive`` instead would be turned into a 400 by FastAPI's body parsing.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._reject(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


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
        raise ValueError(
            f"max_ids and max_body_bytes must be positive, got {max_ids}, {max_body_bytes}"
        )
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
                {
                    "detail": f"too many ids: {len(request.ids)} > {max_ids} per request; split the request"
                },
                status_code=413,
            )
        store = holder.current()  # one snapshot for the whole request
        try:
            vectors = store.get(request.ids, version=request.version, kind=request.kind)
        except UnknownVersionError as err:
            return JSONResponse({"detail": str(err), "versions": err.available}, status_code=404)
        except UnknownIdsError as err:
            return JSONResponse(
                {"detail": str(err), "unknown_ids": err.missing[:100]}, status_code=404
            )
        version = store.latest if request.version is None else request.version
        head = {
            "version": version,
            "latest": store.latest,
            "kind": request.kind,
            "dim": int(vectors.shape[1]),
            "ids": [str(i) for i in request.ids],
        }
        if not np.isfinite(vectors).all():  # JSON has no NaN; the store never should either
            logger.error("non-finite values in version %d for %d ids", version, len(request.ids))
            return JSONResponse(
                {"detail": f"non-finite values in the version-{version} vectors"}, status_code=500
            )
        text = json.dumps(head, separators=(",", ":"))[:-1]
        if request.encoding == "base64":
            raw = base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode()
            text += f',"dtype":"<f4","shape":[{vectors.shape[0]},{vectors.shape[1]}],"vectors_base64":"{raw}"}}'
        else:
            text += f',"vectors":{json_matrix(vectors)}}}'
        return Response(text, media_type="application/json")

    return app
