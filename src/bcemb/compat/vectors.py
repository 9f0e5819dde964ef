"""Vectors of one model version as a Parquet table (the input of ``bcemb adapt``).

A table has an id column (default ``id``; strings or integers, compared as strings) and the
vectors either as one list column (default ``vector``: ``list<float>`` of equal lengths) or as
one numeric column per dimension (every column that is not the id, the kind or the label, in
file order). Optional: a ``kind`` column (``user``/``item``; default every row an item) and a
label column for the linear-probe report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["Vectors", "read_vectors", "write_vectors"]


@dataclass(frozen=True)
class Vectors:
    """Vectors of one version.

    Attributes:
        ids: Row ids as strings. Shape ``[N]``.
        vectors: float32. Shape ``[N, D]``.
        kinds: ``user`` or ``item`` per row. Shape ``[N]``.
        labels: The label column (any values) or None. Shape ``[N]``.
    """

    ids: np.ndarray
    vectors: np.ndarray
    kinds: np.ndarray
    labels: np.ndarray | None = None

    @property
    def dim(self) -> int:
        """``D``."""
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def read_vectors(
    path: str | Path, *, id_col: str = "id", vector_col: str = "vector", label_col: str | None = None
) -> Vectors:
    """Read a vectors table (see the module docstring); errors name the file and the column.

    Raises:
        ValueError: Missing id column, no vector columns, ragged or non-finite vectors,
            duplicate or empty ids, unknown kinds.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no vectors file at {path}")
    try:
        table = pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise ValueError(f"cannot read {path} as Parquet: {err}") from err
    names = table.column_names
    if id_col not in names:
        raise ValueError(f"{path}: no id column {id_col!r}; columns: {', '.join(names)}")
    if label_col is not None and label_col not in names:
        raise ValueError(f"{path}: no label column {label_col!r}; columns: {', '.join(names)}")
    ids = np.asarray([str(v) if v is not None else "" for v in table.column(id_col).to_pylist()], dtype=object)
    if (ids == "").any():
        raise ValueError(f"{path}: {int((ids == '').sum())} empty ids in column {id_col!r}")
    vtype = table.schema.field(vector_col).type if vector_col in names else None
    if vtype is not None and (
        pa.types.is_list(vtype) or pa.types.is_large_list(vtype) or pa.types.is_fixed_size_list(vtype)
    ):
        rows = table.column(vector_col).to_pylist()
        lengths = {len(r) if r is not None else 0 for r in rows}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"{path}: column {vector_col!r} holds vectors of different or zero lengths")
        x = np.asarray(rows, dtype=np.float32)
    else:
        skip = {id_col, "kind", label_col}
        cols = [c for c in names if c not in skip]
        bad = [c for c in cols if not pa.types.is_integer(table.schema.field(c).type)
               and not pa.types.is_floating(table.schema.field(c).type)]
        if not cols or bad:
            raise ValueError(
                f"{path}: expected a list column {vector_col!r} or one numeric column per dimension; "
                + (f"non-numeric columns: {', '.join(bad)}" if bad else "found no vector columns")
            )
        x = np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in cols], axis=1).astype(np.float32)
    if len(x) == 0:
        raise ValueError(f"{path}: no rows")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: the vectors hold NaN or infinite values")
    kinds = (
        np.asarray(table.column("kind").to_pylist(), dtype=object)
        if "kind" in names
        else np.full(len(ids), "item", dtype=object)
    )
    unknown = set(kinds) - {"user", "item"}
    if unknown:
        raise ValueError(f"{path}: column 'kind' must be 'user' or 'item', got {sorted(map(str, unknown))[:3]}")
    if len(set(zip(kinds, ids, strict=True))) != len(ids):  # users and items are separate id spaces
        raise ValueError(f"{path}: duplicate ids in column {id_col!r} (within one kind)")
    labels = np.asarray(table.column(label_col).to_pylist(), dtype=object) if label_col else None
    return Vectors(ids, x, kinds, labels)


def write_vectors(path: str | Path, ids: np.ndarray, vectors: np.ndarray, *, extra: dict | None = None) -> None:
    """Write ``id`` and ``vector`` (``list<float32>``) columns, plus ``extra`` columns."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    offsets = pa.array(np.arange(0, x.size + 1, max(x.shape[1], 1), dtype=np.int32))
    vec = pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1)))
    cols = {"id": pa.array([str(i) for i in ids], pa.string()), "vector": vec}
    for name, values in (extra or {}).items():
        cols[name] = pa.array(list(values))
    pq.write_table(pa.table(cols), path)
