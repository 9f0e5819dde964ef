"""Crafted store content with valid checksums: hostile manifests and hostile files.

A manifest and ``CURRENT`` carry checksums, not signatures: whoever can write the store can
commit a manifest of their own. Two sweeps on a small published store:

1. **Manifests**: every field of the manifest (every nested value, key by key) replaced by
   each of 13 hostile values (null, list, object, string, -1, 0, 1e30, 1.5, true, ``../x``,
   ``/etc/passwd``, NaN, infinity), plus a few absurd documents (100,000 nested brackets,
   1e400, invalid UTF-8); each committed with a valid pointer, then opened with ``get``,
   ``check``, ``usage``, ``describe``, checked with ``check_store``, collected with ``gc`` and
   published onto. Any exception other than a ``StoreError`` counts as a crash.
2. **Files**: one stored file replaced by crafted content whose checksum is committed (ids
   with nulls, integers, other kinds or no kind column; embeddings with NaN rows, float64,
   1-D, big-endian, Fortran order or a row short; transforms with NaN, infinite, wrongly
   shaped, empty or garbage weights; probes of infinities; a garbage model); then opened,
   read in every version, checked and used by ``embed_new``. Counted: crashes (non-store
   exceptions), non-finite vectors served, and bad files that ``check_store`` did not name.

Usage:
    python benchmarks/store_crafted.py

Prints ``name value`` lines; the last are ``crafted_crashes N``, ``nonfinite_served N`` and
``crafted_files_not_named N`` (all 0 is the target).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _nodes(obj: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield from _nodes(v, (*at, k))


def _commit(root: Path, raw: bytes, seq: int = 99) -> None:
    from bcemb.store.manifest import _pointer_check

    name = f"manifests/{seq:06d}.json"
    (root / name).write_bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    body = {"format_version": 1, "manifest": name, "sha256": sha, "check": _pointer_check(name, sha)}
    (root / "CURRENT").write_text(json.dumps(body))


def main() -> None:  # noqa: PLR0915 - one linear script
    logging.disable(logging.CRITICAL)
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    from bcemb.store import EmbeddingStore, StoreError, collect_garbage, publish
    from bcemb.store._testing import write_fake_run
    from bcemb.store.manifest import read_pointer
    from bcemb.store.store import check_store

    work = Path(tempfile.mkdtemp(prefix="bcemb-crafted-"))
    crashes: Counter[str] = Counter()

    def attempt(label: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except StoreError:
            return None
        except Exception as err:  # noqa: BLE001 - counting what escapes is the point
            crashes[f"{label}: {type(err).__name__}"] += 1
            return None

    try:
        run = write_fake_run(work / "run", seed=1)
        base = work / "base"
        publish(run, base, min_probes=8, check_model=False)
        pointer = read_pointer(base)
        assert pointer is not None
        original = json.loads((base / pointer[0]).read_text())
        root = work / "s"

        def fresh() -> Path:
            shutil.rmtree(root, ignore_errors=True)
            return shutil.copytree(base, root)

        def readers(r: Path) -> None:
            def opened() -> None:
                s = EmbeddingStore(r, verify=False)
                s.get(list(s.ids("user")[:3]), version=0)
                s.check()
                s.usage()
                s.describe()

            attempt("open", opened)
            attempt("check_store", lambda: check_store(r))
            attempt("gc", lambda: collect_garbage(r))
            attempt("publish", lambda: publish(run, r, min_probes=8, check_model=False))

        hostile = [None, [], {}, "x", -1, 0, 10**30, 1.5, True, "../x", "/etc/passwd",
                   float("nan"), float("inf")]  # fmt: skip
        manifests = 0
        for at in _nodes(original):
            for value in hostile if at else [None]:
                d: Any = copy.deepcopy(original)
                if at:
                    target = d
                    for k in at[:-1]:
                        target = target[k]
                    target[at[-1]] = value
                else:
                    d = value
                _commit(fresh(), json.dumps(d).encode())
                readers(root)
                manifests += 1
        for raw in (
            b"[" * 100_000 + b"]" * 100_000,
            b'{"format_version": 1e400}',
            b'{"format_version": 1, "seq": 1e400}',
            b"\xff\xfe\x00",
        ):
            _commit(fresh(), raw)
            readers(root)
            manifests += 1
        print(f"crafted_manifests {manifests}")

        # ---------------------------------------------------------------- crafted files
        def parquet(table: pa.Table) -> bytes:
            buf = io.BytesIO()
            pq.write_table(table, buf)
            return buf.getvalue()

        def npy(a: np.ndarray) -> bytes:
            buf = io.BytesIO()
            np.save(buf, a, allow_pickle=False)
            return buf.getvalue()

        def weights(rel: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> bytes:
            with safe_open(str(base / rel), "pt") as f:
                meta = f.metadata()
            return save(fn(load_file(base / rel)), metadata=meta)

        ids = pq.read_table(base / "versions/2/ids.parquet")
        emb = np.load(base / "versions/2/user_emb.npy")
        probes = pq.read_table(base / "versions/0/probes.parquet")
        col = probes.column("embedding").combine_chunks()
        inf = pa.FixedSizeListArray.from_arrays(
            pa.array(np.full(len(col) * col.type.list_size, np.inf, np.float32)), type=col.type
        )
        nan_rows = emb.copy()
        nan_rows[::3, 0] = np.nan
        t1, t2 = "versions/1/transform.safetensors", "versions/2/transform.safetensors"
        cases: dict[str, tuple[str, Callable[[], bytes]]] = {
            "ids_null": ("versions/2/ids.parquet", lambda: parquet(ids.set_column(
                1, "id", pa.array([None, *ids.column("id").to_pylist()[1:]], pa.string())))),
            "ids_int": ("versions/2/ids.parquet", lambda: parquet(ids.set_column(
                1, "id", pa.array(range(ids.num_rows), pa.int64())))),
            "ids_other_kind": ("versions/2/ids.parquet", lambda: parquet(ids.set_column(
                0, "kind", pa.array(["robot"] * ids.num_rows)))),
            "ids_no_kind": ("versions/2/ids.parquet", lambda: parquet(ids.drop(["kind"]))),
            "ids_empty": ("versions/2/ids.parquet", lambda: parquet(ids.slice(0, 0))),
            "emb_nan_rows": ("versions/2/user_emb.npy", lambda: npy(nan_rows)),
            "emb_float64": ("versions/2/user_emb.npy", lambda: npy(emb.astype(np.float64))),
            "emb_1d": ("versions/2/user_emb.npy", lambda: npy(emb.reshape(-1))),
            "emb_big_endian": ("versions/2/user_emb.npy", lambda: npy(emb.astype(">f4"))),
            "emb_fortran": ("versions/2/user_emb.npy", lambda: npy(np.asfortranarray(emb))),
            "emb_row_short": ("versions/2/user_emb.npy", lambda: npy(emb[:-1])),
            "transform_nan": (t1, lambda: weights(t1, lambda d: {k: v * float("nan") for k, v in d.items()})),
            "transform_inf": (t2, lambda: weights(t2, lambda d: {k: v * 1e38 * 1e38 for k, v in d.items()})),
            "transform_shape": (t2, lambda: weights(t2, lambda d: {k: v[..., :1].contiguous() for k, v in d.items()})),
            "transform_empty": (t2, lambda: weights(t2, lambda d: {})),
            "transform_garbage": (t2, lambda: b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}"),
            "probes_inf": ("versions/0/probes.parquet", lambda: parquet(probes.set_column(
                2, probes.schema.field(2), inf))),
            "model_garbage": ("versions/2/model.safetensors", lambda: b"not a model"),
        }  # fmt: skip
        nonfinite = not_named = 0
        for name, (rel, make) in cases.items():
            r = fresh()
            data = make()
            (r / rel).write_bytes(data)
            d = copy.deepcopy(original)
            d["seq"] += 1
            d["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            _commit(r, json.dumps(d).encode(), d["seq"])

            def every_version(r: Path = r) -> list[np.ndarray]:
                s = EmbeddingStore(r)
                return [np.asarray(s.get(list(s.ids(k)[:5]), version=v, kind=k))
                        for k in ("user", "item") for v in s.versions]  # fmt: skip

            served = attempt(f"get[{name}]", every_version) or []
            nonfinite += sum(int((~np.isfinite(z)).any()) for z in served)
            report = attempt(f"check_store[{name}]", lambda r=r: check_store(r))
            named = report is not None and any(rel in p for p in report.problems)
            if name != "model_garbage":  # the model is only read by embed_new
                not_named += not named

            def embed(r: Path = r) -> None:
                s = EmbeddingStore(r)
                s.embed_new([("a-new-user", s.ids("item")[0])])

            attempt(f"embed_new[{name}]", embed)
            print(f"case {name} served_nonfinite {nonfinite} named {named}")
        print(f"crafted_files {len(cases)}")
        for key, n in sorted(crashes.items()):
            print(f"crash {key} x{n}")
        print(f"crafted_crashes {sum(crashes.values())}")
        print(f"nonfinite_served {nonfinite}")
        print(f"crafted_files_not_named {not_named}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
