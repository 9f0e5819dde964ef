"""``POST /embeddings`` bodies: parsed with orjson and checked by hand (no pydantic on the hot path).

orjson rejects what must never reach the store: invalid UTF-8, lone surrogates (``"\\ud800"``),
``NaN``/``Infinity`` literals and numbers that overflow a double (``1e400``); each becomes a
422 naming the problem, like a field of the wrong type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from bcemb.serve.errors import HTTPProblem, clip

__all__ = ["FIELDS", "KINDS", "EmbeddingsQuery", "parse_query"]

KINDS = ("user", "item")
FIELDS = ("ids", "version", "kind", "encoding", "expect_space")
_JSON_TYPES = (b"application/json", b"text/json")


@dataclass(frozen=True)
class EmbeddingsQuery:
    """A checked ``POST /embeddings`` body.

    Attributes:
        ids: Original node ids as strings (integers are turned into their decimal string).
        version: Target version ``j``; None for the latest.
        kind: ``"user"`` or ``"item"``.
        encoding: A registered response encoding (see :mod:`bcemb.serve.encoding`).
        expect_space: The space fingerprint the client holds vectors of (409 if it changed).
    """

    ids: list[str]
    version: int | None
    kind: str
    encoding: str
    expect_space: str | None = None


def check_content_type(value: bytes | None) -> None:
    """Bodies are JSON: no content type, ``application/json`` or ``*/*+json``; else 415."""
    if value is None:
        return
    media = value.split(b";", 1)[0].strip().lower()
    if media in _JSON_TYPES or media.endswith(b"+json"):
        return
    shown = clip(media.decode("latin-1"), 60)
    raise HTTPProblem(415, f"unsupported content type {shown!r}: send application/json")


def _problem(field: str, message: str) -> HTTPProblem:
    return HTTPProblem(422, f"{field}: {message}", field=field)


def _kind_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def parse_query(body: bytes, encodings: tuple[str, ...]) -> EmbeddingsQuery:
    """Check a request body and return the query it asks.

    Args:
        body: The raw body.
        encodings: The accepted values of ``encoding``.

    Raises:
        HTTPProblem: 422 naming the field at fault (or the JSON error).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise HTTPProblem(422, f"body: invalid JSON: {clip(str(err), 200)}", field="body") from None
    if not isinstance(data, dict):
        raise _problem("body", f"expected a JSON object, got {_kind_name(data)}")
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        names = ", ".join(repr(clip(k, 40)) for k in unknown[:5])
        raise _problem(unknown[0][:40], f"unknown field(s) {names}; the fields are {', '.join(FIELDS)}")
    if "ids" not in data:
        raise _problem("ids", "missing (a list of strings or integers)")
    raw = data["ids"]
    if not isinstance(raw, list):
        raise _problem("ids", f"expected a list of strings or integers, got {_kind_name(raw)}")
    if set(map(type, raw)) <= {str}:  # the common case, checked in C
        ids: list[str] = raw
    else:
        ids = []
        for n, i in enumerate(raw):
            if isinstance(i, str):
                ids.append(i)
            elif isinstance(i, int) and not isinstance(i, bool):
                ids.append(str(i))
            else:
                raise _problem("ids", f"item {n} must be a string or an integer, got {_kind_name(i)}")
    version = data.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise _problem("version", f"expected an integer or null, got {_kind_name(version)}")
    kind = data.get("kind", "user")
    if kind not in KINDS:
        shown = clip(repr(kind), 40)
        raise _problem("kind", f"expected one of {', '.join(KINDS)}, got {shown}")
    encoding = data.get("encoding", "json")
    if encoding not in encodings:
        shown = clip(repr(encoding), 40)
        raise _problem("encoding", f"expected one of {', '.join(encodings)}, got {shown}")
    expect = data.get("expect_space")
    if expect is not None and not isinstance(expect, str):
        raise _problem("expect_space", f"expected a space fingerprint string or null, got {_kind_name(expect)}")
    return EmbeddingsQuery(ids, version, kind, encoding, expect)
