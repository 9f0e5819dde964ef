"""Generated HTTP requests for property-based tests of the service (needs ``hypothesis``).

Used by ``tests/serve/test_serve_fuzz.py`` and ``benchmarks/serve_fuzz.py``: bodies near the
API (the right fields with hostile values: lone surrogates, NaN, Infinity, 1e400, huge
integers, deep nesting, huge ids) and far from it (random bytes, broken JSON), any method,
path and content type, the body split into random pieces.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

__all__ = ["FuzzRequest", "call_app", "requests"]


@dataclass(frozen=True)
class FuzzRequest:
    """One generated request.

    Attributes:
        method: HTTP method.
        path: Request path.
        headers: Header pairs (lower-case names).
        pieces: The body, in the pieces the client sends.
    """

    method: str
    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    pieces: tuple[bytes, ...]

    @property
    def body(self) -> bytes:
        """The whole body."""
        return b"".join(self.pieces)


def _hostile_text() -> st.SearchStrategy[str]:
    surrogate = st.integers(0xD800, 0xDFFF).map(chr)
    plain = st.text(max_size=20)
    return st.one_of(
        plain,
        st.builds(lambda a, s, b: a + s + b, plain, surrogate, plain),
        st.sampled_from(["", "1", "u0", "u1", "i0", "x" * 5000, "\x00", "user", "item", "json",
                         "base64", "binary", "NaN", "Infinity"]),  # fmt: skip
    )


def _scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.integers(-2, 5),
        st.floats(allow_nan=True, allow_infinity=True),
        _hostile_text(),
    )


def _values() -> st.SearchStrategy[Any]:
    return st.recursive(
        _scalars(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=5), st.dictionaries(_hostile_text(), inner, max_size=4)
        ),
        max_leaves=6,
    )


def _near_api_body() -> st.SearchStrategy[bytes]:
    ids = st.one_of(
        st.lists(st.one_of(_hostile_text(), st.integers(-(2**70), 2**70)), max_size=12),
        _values(),
    )
    fields = st.fixed_dictionaries(
        {"ids": ids},
        optional={
            "version": st.one_of(st.integers(-3, 5), _values()),
            "kind": st.one_of(st.sampled_from(["user", "item"]), _values()),
            "encoding": st.one_of(st.sampled_from(["json", "base64", "binary"]), _values()),
            "extra": _values(),
        },
    )
    big = st.sampled_from([b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b"1" * 400])

    def dump(data: Any) -> bytes:
        # ensure_ascii writes lone surrogates as \\udXXX escapes; allow_nan writes NaN/Infinity.
        return json.dumps(data, allow_nan=True, ensure_ascii=True).encode()

    return st.one_of(
        fields.map(dump),
        _values().map(dump),
        st.builds(lambda b, n: b'{"ids": ["1"], "version": ' + n + b"}", st.none(), big),
        st.builds(lambda n: b'{"ids": [' + n + b"]}", big),
    )


def _bodies() -> st.SearchStrategy[bytes]:
    def mutate(body: bytes, at: int, junk: bytes) -> bytes:
        at = at % (len(body) + 1)
        return body[:at] + junk + body[at:]

    return st.one_of(
        _near_api_body(),
        _near_api_body(),
        st.builds(mutate, _near_api_body(), st.integers(0, 10_000), st.binary(min_size=1, max_size=4)),
        st.binary(max_size=200),
    )


def _split(body: bytes, cuts: list[int]) -> tuple[bytes, ...]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    edges = [0, *points, len(body)]
    return tuple(body[a:b] for a, b in zip(edges, edges[1:], strict=False)) or (b"",)


def requests() -> st.SearchStrategy[FuzzRequest]:
    """Generated requests, mostly ``POST /embeddings``."""
    method = st.one_of(st.just("POST"), st.just("POST"), st.sampled_from(["GET", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]))
    path = st.one_of(
        st.just("/embeddings"),
        st.just("/embeddings"),
        st.sampled_from(["/health", "/versions", "/docs", "/openapi.json", "/", "/embeddings/"]),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30).map(lambda p: "/" + p),
    )
    content_type = st.one_of(
        st.just(b"application/json"),
        st.none(),
        st.sampled_from([b"text/plain", b"application/x-www-form-urlencoded", b"application/ld+json",
                         b"application/json; charset=latin-1", b"\xff\xfe"]),  # fmt: skip
        st.binary(max_size=30),
    )

    def build(m: str, p: str, ct: bytes | None, body: bytes, cuts: list[int]) -> FuzzRequest:
        headers = () if ct is None else ((b"content-type", ct),)
        return FuzzRequest(m, p, headers, _split(body, cuts))

    return st.builds(build, method, path, content_type, _bodies(), st.lists(st.integers(0, 10_000), max_size=3))


async def call_app(app: Callable[..., Any], request: FuzzRequest, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send a request straight to an ASGI app; the status and body (TimeoutError on a hang)."""
    pieces = list(request.pieces)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "path": request.path,
        "raw_path": request.path.encode(),
        "query_string": b"",
        "headers": [*request.headers, (b"content-length", str(len(request.body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not pieces:
            await asyncio.sleep(3600)  # the body was all sent: a disconnect never comes
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout)
    start = [m for m in sent if m["type"] == "http.response.start"]
    assert len(start) == 1, f"{len(start)} response starts"
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)
    return int(start[0]["status"]), body
