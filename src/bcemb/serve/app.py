"""The HTTP app over an :class:`~bcemb.store.EmbeddingStore`: a small ASGI app, no framework.

Endpoints (a route table, :attr:`EmbeddingService.routes`):

- ``GET /health``: ``{"status": "ok", "latest": k, "manifest": ...}``; 503 with
  ``"status": "degraded"`` and the reason while a newly published state cannot be opened
  (the previous one is still served).
- ``GET /versions``: the versions with their dimension, parent, method and state.
- ``POST /embeddings`` with ``{"ids": [...], "version": j, "kind": "user", "encoding": "json"}``:
  the vectors and the version they are in (encodings: ``json``, ``base64``, ``binary``; see
  :mod:`bcemb.serve.encoding`).
- ``/docs``, ``/redoc``, ``/openapi.json`` only with ``docs=True``.

Errors are ``{"detail": ...}``: unknown ids or version 404 naming them (each id shortened); a
malformed body 422 naming the field; a body not JSON 415; too many ids or too large a body
413; a body not sent in time 408; a store that cannot answer (a served file changed) 503
naming the file. Every answer is built by :meth:`EmbeddingService.respond`.

Requests never wait for a reload: a background thread swaps in each new publish (see
:mod:`bcemb.serve.reload`). Small answers are computed on the event loop (microseconds);
large ones in a worker thread, block by block, each block sent before the next is computed,
so a client that does not read holds one block of memory at most.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bcemb.serve.encoding import ENCODINGS, Answer, Encoding, json_matrix
from bcemb.serve.errors import HTTPProblem, clip
from bcemb.serve.reload import StoreWatcher
from bcemb.serve.views import ViewPolicy, json_texts
from bcemb.serve.request import EmbeddingsQuery, check_content_type, parse_query
from bcemb.serve.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IDS, ServiceLimits
from bcemb.store import EmbeddingStore, StoreError, UnknownIdsError, UnknownVersionError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_IDS",
    "EmbeddingService",
    "Reply",
    "create_app",
    "json_matrix",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Scope, Receive], Awaitable["Reply"]]

_JSON = b"application/json"
_SHOWN_IDS = 100  # unknown ids listed in a 404


@dataclass
class Reply:
    """An answer before it is sent: a whole body, or a stream of pieces.

    Attributes:
        status: HTTP status.
        body: The whole body (when ``stream`` is None).
        content_type: Media type.
        headers: Extra headers.
        stream: Pieces of the body, computed as they are sent.
        length: The streamed body's size when known (else chunked).
        close: Close the connection after the answer (the request body was not read).
    """

    status: int
    body: bytes = b""
    content_type: bytes = _JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    stream: AsyncIterator[bytes] | None = None
    length: int | None = None
    close: bool = False

    @classmethod
    def json(cls, status: int, data: Any, **kwargs: Any) -> Reply:
        """A JSON answer."""
        return cls(status, orjson.dumps(data), **kwargs)


def _problem_reply(problem: HTTPProblem) -> Reply:
    close = problem.status in (408, 413)  # the body may be unread: do not reuse the connection
    return Reply.json(problem.status, {"detail": problem.detail, **problem.extra}, close=close)


def _unknown_ids(err: UnknownIdsError) -> HTTPProblem:
    """404 naming the unknown ids, each shortened (a 4 MB id must not come back)."""
    shown = [clip(m) for m in err.missing[:_SHOWN_IDS]]
    listed = ", ".join(repr(m) for m in shown[:5])
    more = f" and {len(err.missing) - 5} more" if len(err.missing) > 5 else ""
    return HTTPProblem(
        404,
        f"unknown {err.kind} ids ({len(err.missing)} of {err.total}): {listed}{more}",
        unknown_ids=shown,
    )


def _store_problem(err: StoreError) -> HTTPProblem:
    """Store errors as answers: unknown ids/version 404, anything else 503 naming the file."""
    if isinstance(err, UnknownIdsError):
        return _unknown_ids(err)
    if isinstance(err, UnknownVersionError):
        return HTTPProblem(404, clip(str(err), 200), versions=err.available)
    path = getattr(err, "path", None)
    extra = {"file": path} if path else {}
    return HTTPProblem(503, f"the store cannot answer now: {clip(str(err), 500)}", **extra)


_PlanKey = tuple[int | None, str, str]  # version (None: the latest), kind, encoding


@dataclass(frozen=True)
class _Plan:
    """What every answer of one version, kind and encoding of one store snapshot shares, worked
    out on the first such request: a small answer is then a lookup, a gather and one join.

    Attributes:
        answer: The answer's fields with no ids (:meth:`Answer.with_ids` adds them).
        encoding: The response encoding.
        texts: The rows' kept JSON texts (:func:`~bcemb.serve.views.json_texts`) when the
            answer is JSON and they are kept, else None (after a reload, the texts of the new
            snapshot are computed while it serves: they are looked for again then).
        around_ids: The head's bytes before and after the ids (their JSON comes between), when
            the head holds the ids and nothing else that changes with the request.
        extra: The response headers that do not depend on the ids asked.
    """

    answer: Answer
    encoding: Encoding
    texts: np.ndarray | None
    around_ids: tuple[bytes, bytes] | None
    extra: list[tuple[bytes, bytes]]

    @classmethod
    def of(cls, store: EmbeddingStore, version: int | None, kind: str, encoding: Encoding) -> _Plan:
        """The plan of ``version`` (None: the latest) and ``kind`` in ``store``.

        Raises:
            UnknownVersionError: No such version.
        """
        dim = store.dim(version)
        j = store.latest if version is None else version
        answer = Answer(j, store.latest, kind, [], dim, store.space(version))
        texts = json_texts(store, kind, j) if encoding.joins_texts else None
        around = None
        if not encoding.sized_head:
            before, found, after = encoding.head(answer).partition(b'"ids":[]')
            around = (before + b'"ids":', after) if found else None
        extra = [*encoding.fixed_headers(answer), (b"x-embedding-space", answer.space.encode())]
        return cls(answer, encoding, texts, around, extra)

    def headers(self, n: int) -> list[tuple[bytes, bytes]]:
        """The response headers of an answer of ``n`` rows."""
        shape = self.encoding.rows_headers(n, self.answer.dim)
        return [*shape, *self.extra] if shape else self.extra

    def texts_in(self, store: EmbeddingStore) -> np.ndarray | None:
        """:attr:`texts`, or the texts of ``store`` kept after the plan was made (a reload)."""
        if self.texts is None and self.encoding.joins_texts:
            return json_texts(store, self.answer.kind, self.answer.version)
        return self.texts

    def body(self, store: EmbeddingStore, query: EmbeddingsQuery, rows: np.ndarray) -> bytes:
        """The whole answer of ``rows`` (from :meth:`EmbeddingStore.rows`) in one piece."""
        if self.around_ids is None:
            head = self.encoding.head(self.answer.with_ids(query.ids))
        else:
            before, after = self.around_ids
            head = b"".join((before, orjson.dumps(query.ids), after))
        texts = self.texts_in(store)
        parts = _rows_parts(store, query, self.answer, self.encoding, texts, rows, True, True)
        # One copy: the rows' texts (or the block's buffer) are joined straight into the body.
        return b"".join([head, *parts, self.encoding.tail(self.answer)])


class EmbeddingService:
    """The ASGI app. Build it with :func:`create_app`.

    Attributes:
        watcher: The served store snapshot and its reload thread.
        limits: Request limits.
        routes: ``{(method, path): handler}``; a handler takes the scope and ``receive`` and
            returns a :class:`Reply`.
    """

    def __init__(
        self, watcher: StoreWatcher, limits: ServiceLimits, docs: Any | None = None
    ) -> None:
        self.watcher = watcher
        self.limits = limits
        self.encodings = tuple(ENCODINGS)
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", "/health"): self.health,
            ("GET", "/versions"): self.versions,
            ("POST", "/embeddings"): self.embeddings,
        }
        try:  # prometheus-client is part of the serve extra; without it, no /metrics
            from bcemb.serve.metrics import ServiceMetrics

            self.metrics: ServiceMetrics | None = ServiceMetrics()
            self.routes[("GET", "/metrics")] = self.prometheus
        except ImportError:  # pragma: no cover
            self.metrics = None
        self._docs = docs
        self._deadlines = _Deadlines()
        self._docs_paths = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
        # Per snapshot (weak keys: a snapshot swapped out by a reload takes its plans along).
        self._plans: weakref.WeakKeyDictionary[EmbeddingStore, dict[_PlanKey, _Plan]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def store(self) -> EmbeddingStore:
        """The snapshot being served now."""
        return self.watcher.store

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":  # websockets: not served
            return
        path = scope["path"]
        if self._docs is not None and path in self._docs_paths:
            await self._docs(scope, receive, send)
            return
        handler = self.routes.get((scope["method"], path))
        started = time.perf_counter()
        try:
            if handler is None:
                reply = self._no_route(scope["method"], path)
            else:
                reply = await handler(scope, receive)
        except HTTPProblem as problem:
            reply = _problem_reply(problem)
        except StoreError as err:
            reply = _problem_reply(_store_problem(err))
        except Exception:  # noqa: BLE001 - a bug must not take the server down
            logger.exception("unexpected error answering %s %s", scope["method"], clip(path))
            reply = Reply.json(500, {"detail": "internal error (logged by the server)"})
        await self.respond(send, reply)
        if self.metrics is not None:
            ok = reply.status < 400
            self.metrics.observe(
                path if handler is not None else "other",
                scope.get("bcemb.version", "none"),
                reply.status,
                time.perf_counter() - started,
                scope.get("bcemb.vectors", 0) if ok else 0,
            )

    def _no_route(self, method: str, path: str) -> Reply:
        allowed = sorted(m for m, p in self.routes if p == path)
        if allowed:
            return Reply.json(
                405,
                {"detail": f"method {clip(method, 20)} not allowed; use {', '.join(allowed)}"},
                headers=[(b"allow", ", ".join(allowed).encode())],
            )
        return Reply.json(404, {"detail": f"no endpoint {clip(path)!r}"})

    async def respond(self, send: Send, reply: Reply) -> None:
        """Send an answer: the one place where responses are built."""
        headers = [(b"content-type", reply.content_type), *reply.headers]
        if reply.close:
            headers.append((b"connection", b"close"))
        if reply.stream is None:
            headers.append((b"content-length", str(len(reply.body)).encode()))
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            await send({"type": "http.response.body", "body": reply.body})
            return
        if reply.length is not None:
            headers.append((b"content-length", str(reply.length).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        try:
            async for piece in reply.stream:
                # A piece is written only once the previous ones left the buffer (uvicorn's
                # flow control); a client that stops reading is dropped after send_timeout.
                async with asyncio.timeout(self.limits.send_timeout):
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except TimeoutError:
            logger.warning("dropped a client that read nothing for %.0f s", self.limits.send_timeout)
        except Exception:  # noqa: BLE001 - the status is sent; the server closes the connection
            logger.exception("error while streaming an answer")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.watcher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.watcher.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ endpoints

    async def health(self, scope: Scope, receive: Receive) -> Reply:
        """Liveness, the served version, and whether the newest publish could be opened."""
        store = self.store
        body: dict[str, Any] = {"latest": store.latest, "manifest": store.manifest.name}
        error = self.watcher.error
        if error is None:
            return Reply.json(200, {"status": "ok", **body})
        detail = f"a newer store state cannot be opened; still serving {store.manifest.name}: {error}"
        return Reply.json(
            503,
            {"status": "degraded", **body, "detail": detail, "since": self.watcher.failed_since},
        )

    async def prometheus(self, scope: Scope, receive: Receive) -> Reply:
        """Prometheus text: requests, latency, vectors served, latest version, probe errors."""
        from bcemb.serve.metrics import CONTENT_TYPE

        assert self.metrics is not None
        store = self.store
        loop = asyncio.get_running_loop()
        # Probe errors are computed once per store snapshot, off the event loop.
        await loop.run_in_executor(None, self.metrics.track_store, store)
        return Reply(200, self.metrics.render(), CONTENT_TYPE.encode())

    async def versions(self, scope: Scope, receive: Receive) -> Reply:
        """Every version with its dimension, parent, method and state."""
        store = self.store
        return Reply.json(200, {"latest": store.latest, "versions": store.describe()})

    async def embeddings(self, scope: Scope, receive: Receive) -> Reply:
        """Vectors of stored nodes in any version."""
        check_content_type(_header(scope, b"content-type"))
        body = await self._read_body(scope, receive)
        query = parse_query(body, self.encodings)
        if len(query.ids) > self.limits.max_ids:
            raise HTTPProblem(
                413,
                f"too many ids: {len(query.ids)} > {self.limits.max_ids} per request; "
                "split the request",
            )
        store = self.store  # one snapshot for the whole request
        scope["bcemb.version"] = query.version
        plan = self._plan(store, query)
        if query.expect_space is not None and query.expect_space != plan.answer.space:
            # The client holds vectors of another space (an earlier publish, another version):
            # mixing them with these would be silently wrong.
            space = plan.answer.space
            raise HTTPProblem(
                409,
                f"the space changed: the store now serves {space} for version "
                f"{plan.answer.version}, not {clip(query.expect_space, 40)}; refetch the "
                "vectors you hold",
                space=space,
                expected=clip(query.expect_space, 40),
            )
        n = len(query.ids)
        scope["bcemb.vectors"] = n
        encoding = plan.encoding
        if n * plan.answer.dim * 4 <= self.limits.chunk_bytes:
            rows = store.rows(query.ids, kind=query.kind)
            return Reply(200, plan.body(store, query, rows), encoding.content_type, plan.headers(n))
        answer = plan.answer.with_ids(query.ids)
        loop = asyncio.get_running_loop()
        # Every id is looked up (and an unknown one refused) before the answer starts.
        rows = await loop.run_in_executor(None, lambda: store.rows(query.ids, kind=query.kind))
        return Reply(
            200,
            content_type=encoding.content_type,
            headers=plan.headers(n),
            stream=self._blocks(store, query, rows, answer, plan),
            length=encoding.length(answer),
        )

    def _plan(self, store: EmbeddingStore, query: EmbeddingsQuery) -> _Plan:
        """The :class:`_Plan` of the query's version, kind and encoding in ``store``."""
        plans = self._plans.get(store)
        if plans is None:
            plans = self._plans.setdefault(store, {})
        key = (query.version, query.kind, query.encoding)
        plan = plans.get(key)
        if plan is None:
            encoding = ENCODINGS[query.encoding]
            plan = plans[key] = _Plan.of(store, query.version, query.kind, encoding)
        return plan

    # ------------------------------------------------------------------ helpers

    async def _blocks(
        self,
        store: EmbeddingStore,
        query: EmbeddingsQuery,
        rows: np.ndarray,
        answer: Answer,
        plan: _Plan,
    ) -> AsyncIterator[bytes]:
        """Head, row blocks one at a time (products in a worker thread), tail."""
        encoding = plan.encoding
        texts = plan.texts_in(store)
        # A row gather (the latest or a materialized version) or a join of kept texts costs
        # less than the hop to a worker thread; only blocks with a product go there. Such
        # cheap blocks go out in pieces of about 1 MiB: fewer waits on the socket's flow control.
        inline = texts is not None or store.precomputed(answer.version)
        chunk = self.limits.chunk_bytes * (encoding.gather_chunks if inline else 1)
        step = max(1, chunk // (4 * max(answer.dim, 1)))
        step = max(encoding.row_multiple, step - step % encoding.row_multiple)
        loop = asyncio.get_running_loop()

        starts = list(range(0, answer.rows, step))
        if len(starts) > 1 and answer.rows - starts[-1] == 1:
            # A one-row product takes BLAS's matrix-vector path, whose float32 rounding differs
            # from the matrix-matrix one: join a last lone row to the block before it, so that
            # the streamed answer equals ``store.get`` of the same ids bit for bit.
            starts.pop()
        ends = [*starts[1:], answer.rows]

        def block(start: int, end: int) -> bytes:
            first, last = start == 0, end == answer.rows
            return b"".join(_rows_parts(store, query, answer, encoding, texts, rows[start:end], first, last))

        head = encoding.head(answer)
        if head:
            yield head
        for start, end in zip(starts, ends, strict=True):
            if inline:
                yield block(start, end)
            else:
                yield await loop.run_in_executor(None, block, start, end)
        tail = encoding.tail(answer)
        if tail:
            yield tail

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, at most ``max_body_bytes``, each piece within ``body_timeout``."""
        limit = self.limits.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPProblem(413, f"request body larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        more = True
        task = asyncio.current_task()
        assert task is not None
        deadlines = self._deadlines
        try:
            while more:
                deadlines.set(task, self.limits.body_timeout)
                message = await receive()
                if message["type"] != "http.request":
                    raise HTTPProblem(400, "the client went away before sending its body")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise HTTPProblem(413, f"request body larger than {limit} bytes")
                chunks.append(chunk)
                more = message.get("more_body", False)
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise
            raise HTTPProblem(
                408, f"request body not received within {self.limits.body_timeout:g} s"
            ) from None
        finally:
            deadlines.clear(task)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Deadlines:
    """Deadlines of body reads, enforced by one periodic check per event loop.

    A timer per read (``asyncio.timeout``) costs more than reading a small body; here a read
    costs two dict operations, and a check every ``period`` seconds (while reads are pending)
    cancels the reads past their deadline (so a deadline holds to within ``period``).
    """

    def __init__(self, period: float = 0.25) -> None:
        self.period = period
        self._pending: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def set(self, task: asyncio.Task[Any], seconds: float) -> None:
        """``task`` must be done reading within ``seconds``."""
        self._pending[task] = time.monotonic() + seconds
        loop = asyncio.get_running_loop()
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(self.period, self._check)

    def clear(self, task: asyncio.Task[Any]) -> None:
        """``task`` is done reading."""
        self._pending.pop(task, None)
        self._expired.discard(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled for its deadline (then the cancellation is undone)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _check(self) -> None:
        now = time.monotonic()
        for task in [t for t, d in self._pending.items() if d <= now]:
            del self._pending[task]
            if not task.done():
                self._expired.add(task)
                task.cancel()
        live = [t for t in self._pending if t.get_loop() is self._loop]
        self._timer = self._loop.call_later(self.period, self._check) if live and self._loop else None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _rows_parts(
    store: EmbeddingStore,
    query: EmbeddingsQuery,
    answer: Answer,
    encoding: Encoding,
    texts: np.ndarray | None,
    rows: np.ndarray,
    first: bool,
    last: bool,
) -> list[bytes | np.ndarray]:
    """The encoded block of ``rows`` (from :meth:`EmbeddingStore.rows`) as buffers to join: their
    kept JSON texts (finite when kept) where there are some, else their vectors, checked finite
    (``b"".join(...)`` of them is what a stream sends)."""
    if texts is not None:
        store.ensure_unchanged(query.kind)
        return encoding.from_pieces(texts[rows].tolist(), last)
    vectors = store.get_rows(rows, version=query.version, kind=query.kind)
    _check_finite(vectors, answer.version)
    return [encoding.piece(vectors, first)]


def _check_finite(vectors: np.ndarray, version: int) -> None:
    # On the plain array: the space-checking ufunc override of SpaceVectors costs more than
    # the check itself on a small answer.
    if not np.isfinite(vectors.view(np.ndarray)).all():  # JSON has no NaN; the store never should either
        logger.error("non-finite values in version %d of the store", version)
        raise HTTPProblem(503, f"the store holds non-finite values in version {version}")


def create_app(
    store_dir: str | Path,
    *,
    max_ids: int = DEFAULT_MAX_IDS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    verify: bool = True,
    refresh_seconds: float = 0.25,
    limits: ServiceLimits | None = None,
    docs: bool = False,
    views: ViewPolicy | None = None,
) -> EmbeddingService:
    """Build the HTTP app of a store (the store is opened now, so errors surface early).

    Args:
        store_dir: The store directory.
        max_ids: Most ids per request (more -> 413). Default 10,000.
        max_body_bytes: Largest request body (larger -> 413). Default 4 MiB.
        verify: Check the store's checksums when opening it (and each new publish).
        refresh_seconds: How often the background watcher looks for a new publish; negative
            to never. The watcher runs while the app runs (ASGI lifespan).
        limits: All request limits (overrides ``max_ids`` and ``max_body_bytes``).
        docs: Serve ``/docs``, ``/redoc`` and ``/openapi.json`` (needs FastAPI).
        views: Older versions kept materialized in memory (default: every older version
            within 1 GiB, see :class:`~bcemb.serve.views.ViewPolicy`).

    Returns:
        The ASGI app.

    Example:
        >>> import uvicorn
        >>> uvicorn.run(create_app("store"), host="127.0.0.1", port=8000)
    """
    if limits is None:
        if max_ids < 1 or max_body_bytes < 1:
            raise ValueError(
                f"max_ids and max_body_bytes must be positive, got {max_ids}, {max_body_bytes}"
            )
        limits = ServiceLimits(max_ids=max_ids, max_body_bytes=max_body_bytes)
    limits.check()
    watcher = StoreWatcher(
        Path(store_dir),
        verify=verify,
        interval=refresh_seconds,
        views=views if views is not None else ViewPolicy(),
    )
    docs_app = None
    if docs:
        from bcemb.serve.docs import docs_app as make_docs

        docs_app = make_docs()
    return EmbeddingService(watcher, limits, docs_app)
