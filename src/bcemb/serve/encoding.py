"""Response encodings of ``POST /embeddings``, in a registry: ``json``, ``base64`` and ``binary``.

An answer is a head, the vectors in row blocks, and a tail, so that a large answer can be
computed and sent block by block (bounded memory) and a small one in one piece.

- ``json``: ``{"version", "latest", "kind", "dim", "ids", "vectors": [[...], ...]}`` with the
  shortest float32 digits (orjson formats them in Rust; parsing them as float64 and rounding
  to float32 gives back the exact values).
- ``base64``: the same fields with ``"dtype": "<f4"``, ``"shape": [N, D]`` and
  ``"vectors_base64"``: the little-endian float32 matrix in base64.
- ``binary``: the raw little-endian float32 matrix (``application/octet-stream``, row-major,
  the rows in the order of the requested ids), described by headers ``x-bcemb-shape: N,D``,
  ``x-bcemb-dtype: <f4``, ``x-bcemb-version``, ``x-bcemb-latest`` and ``x-bcemb-kind``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace

import numpy as np
import orjson

__all__ = ["ENCODINGS", "Answer", "Encoding", "json_matrix", "json_row_pieces", "json_row_texts"]


@dataclass(frozen=True)
class Answer:
    """What an answer says besides the vectors.

    Attributes:
        version: The version of the vectors.
        latest: The store's latest version.
        kind: ``"user"`` or ``"item"``.
        ids: The requested ids (strings), in row order.
        dim: ``D_version``.
    """

    version: int
    latest: int
    kind: str
    ids: list[str]
    dim: int
    space: str = ""  # the fingerprint of the vectors' space (bcemb.store.fingerprint)

    def with_ids(self, ids: list[str]) -> Answer:
        """The same answer of ``ids``."""
        return replace(self, ids=ids)

    @property
    def rows(self) -> int:
        """``N``."""
        return len(self.ids)

    def fields(self) -> bytes:
        """The common JSON fields, without the closing brace."""
        fields = {
            "version": self.version,
            "latest": self.latest,
            "kind": self.kind,
            "dim": self.dim,
            "ids": self.ids,
        }
        if self.space:
            fields["space"] = self.space
        return orjson.dumps(fields)[:-1]


def json_matrix(vectors: np.ndarray) -> str:
    """A float32 matrix as a JSON array of arrays, with the shortest float32 digits.

    Shapes:
        vectors: ``[N, D]``, finite.
    """
    return _json_rows(vectors).decode()


def _json_rows(vectors: np.ndarray) -> bytes:
    z = np.ascontiguousarray(vectors, dtype=np.float32)
    if z.shape[1] == 0:  # orjson writes [] for an [N, 0] array
        return b"[" + b",".join([b"[]"] * z.shape[0]) + b"]"
    return orjson.dumps(z, option=orjson.OPT_SERIALIZE_NUMPY)


def json_row_texts(vectors: np.ndarray) -> list[bytes]:
    """Each row's JSON numbers without the brackets (``b"0.5,-1.25"``), exactly as an answer
    writes them: the service keeps these for materialized views, so that a JSON answer of
    stored rows is a join instead of formatting every float again.

    Shapes:
        vectors: ``[N, D]``, finite -> N texts.
    """
    if len(vectors) == 0:
        return []
    # No number's text holds "],[", so splitting the whole matrix's text is exact.
    return _json_rows(vectors)[2:-2].split(b"],[")


def json_row_pieces(texts: list[bytes]) -> np.ndarray:
    """Rows' :func:`json_row_texts` as the pieces of an answer: row ``i`` is
    ``[<texts[i]>],``, one ``bytes`` each in an object array. The pieces of any rows (the last
    one's comma cut) join between an answer's head and tail in one copy.

    Shapes:
        -> ``[len(texts)]``, object (``bytes``).
    """
    return np.fromiter((b"[" + t + b"]," for t in texts), dtype=object, count=len(texts))


def _f32(vectors: np.ndarray) -> np.ndarray:
    """The vectors as contiguous little-endian float32 (no copy when they are already)."""
    return np.ascontiguousarray(vectors, dtype="<f4")


class Encoding:
    """One response encoding.

    Attributes:
        content_type: The answer's media type.
        row_multiple: Blocks of rows must hold a multiple of this many rows (3 for base64,
            so that the blocks' base64 texts join into the whole one's).
    """

    content_type = b"application/json"
    row_multiple = 1
    #: Chunks per block when the rows need no product: the encoded block stays about 1 MiB
    #: (a stalled client holds about one block), in fewer pieces.
    gather_chunks = 1
    #: Blocks can be joined from :func:`json_row_pieces` (:meth:`from_pieces`).
    joins_texts = False
    #: The head depends on the number of rows (not only on the ids' text).
    sized_head = False

    def head(self, answer: Answer) -> bytes:
        """Bytes before the first block."""
        raise NotImplementedError

    def block(self, vectors: np.ndarray, first: bool) -> bytes:
        """One block of rows (``first``: the first block of the answer)."""
        raise NotImplementedError

    def piece(self, vectors: np.ndarray, first: bool) -> bytes | np.ndarray:
        """:meth:`block` as any buffer (no copy where the encoding is the vectors' own bytes):
        a small answer joins it between head and tail, a stream sends ``bytes`` of it."""
        return self.block(vectors, first)

    def from_pieces(self, pieces: list[bytes], last: bool) -> list[bytes]:
        """The block of rows given as their :func:`json_row_pieces` (a list, which this
        changes), as pieces to join; ``last``: the answer's last block (when :attr:`joins_texts`)."""
        raise NotImplementedError

    def tail(self, answer: Answer) -> bytes:
        """Bytes after the last block."""
        raise NotImplementedError

    def rows_headers(self, rows: int, dim: int) -> list[tuple[bytes, bytes]]:
        """The extra headers that depend on the answer's shape."""
        return []

    def fixed_headers(self, answer: Answer) -> list[tuple[bytes, bytes]]:
        """The extra headers that do not depend on the ids asked (only on version and kind)."""
        return []

    def length(self, answer: Answer) -> int | None:
        """The answer's size when known before encoding (else the answer is chunked)."""
        return None


class JsonEncoding(Encoding):
    """Nested JSON lists."""

    joins_texts = True

    def head(self, answer: Answer) -> bytes:  # noqa: D102
        return answer.fields() + b',"vectors":['

    def block(self, vectors: np.ndarray, first: bool) -> bytes:  # noqa: D102
        if len(vectors) == 0:
            return b""
        rows = _json_rows(vectors)[1:-1]
        return rows if first else b"," + rows

    def from_pieces(self, pieces: list[bytes], last: bool) -> list[bytes]:  # noqa: D102
        if last and pieces:
            pieces[-1] = pieces[-1][:-1]  # no comma after the answer's last row
        return pieces

    def tail(self, answer: Answer) -> bytes:  # noqa: D102
        return b"]}"


class Base64Encoding(Encoding):
    """Little-endian float32 bytes in base64, inside JSON."""

    row_multiple = 3
    gather_chunks = 3
    sized_head = True

    def head(self, answer: Answer) -> bytes:  # noqa: D102
        shape = f',"dtype":"<f4","shape":[{answer.rows},{answer.dim}],"vectors_base64":"'
        return answer.fields() + shape.encode()

    def block(self, vectors: np.ndarray, first: bool) -> bytes:  # noqa: D102
        return base64.b64encode(_f32(vectors))  # (any buffer)

    def tail(self, answer: Answer) -> bytes:  # noqa: D102
        return b'"}'


class BinaryEncoding(Encoding):
    """Raw little-endian float32, shape and version in headers."""

    content_type = b"application/octet-stream"
    gather_chunks = 4

    def head(self, answer: Answer) -> bytes:  # noqa: D102
        return b""

    def block(self, vectors: np.ndarray, first: bool) -> bytes:  # noqa: D102
        return _f32(vectors).tobytes()

    def tail(self, answer: Answer) -> bytes:  # noqa: D102
        return b""

    def piece(self, vectors: np.ndarray, first: bool) -> np.ndarray:  # noqa: D102
        return _f32(vectors)

    def rows_headers(self, rows: int, dim: int) -> list[tuple[bytes, bytes]]:  # noqa: D102
        return [(b"x-bcemb-shape", b"%d,%d" % (rows, dim))]

    def fixed_headers(self, answer: Answer) -> list[tuple[bytes, bytes]]:  # noqa: D102
        return [
            (b"x-bcemb-dtype", b"<f4"),
            (b"x-bcemb-version", str(answer.version).encode()),
            (b"x-bcemb-latest", str(answer.latest).encode()),
            (b"x-bcemb-kind", answer.kind.encode()),
        ]

    def length(self, answer: Answer) -> int | None:  # noqa: D102
        return answer.rows * answer.dim * 4


ENCODINGS: dict[str, Encoding] = {
    "json": JsonEncoding(),
    "base64": Base64Encoding(),
    "binary": BinaryEncoding(),
}
