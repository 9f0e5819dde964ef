"""Corruption cases: every stored file damaged several ways, at rest and while being served.

At rest, for every file of a published store (the pointer ``CURRENT`` and the manifest
included) and each way of damaging it (a byte flipped at the start, middle or end, random
single-bit flips, truncated to empty or to half, bytes appended, deleted, replaced by a
folder, and a duplicate id written into ``ids.parquet``):

- ``check_store`` must report the problem naming that file (``named``), never crash;
- a reader (``EmbeddingStore`` + ``get`` of every user and item in every version) must either
  fail with a store error or return exactly the expected vectors (``wrong_vectors_served``).

While served, the memory-mapped ``user_emb.npy`` / ``item_emb.npy`` are changed in place
after the store was opened (50 bytes overwritten, a bit flipped, truncated to half or to
empty, bytes appended); ``get`` must then raise ``StoreUnavailableError`` naming the file or
return exactly the expected vectors, and never crash.

Usage:
    python benchmarks/store_corruption.py [--bit-flips 20]

Prints ``name value`` lines; the last are ``corruption_cases``, ``bad_file_named``,
``bad_file_not_named``, ``crashes`` and ``wrong_vectors_served``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def _flip(where: float) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        data = bytearray(p.read_bytes())
        data[min(int(len(data) * where), len(data) - 1)] ^= 0xFF
        p.write_bytes(bytes(data))

    return damage


def _bit(rng: random.Random) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        data = bytearray(p.read_bytes())
        i = rng.randrange(len(data) * 8)
        data[i // 8] ^= 1 << (i % 8)
        p.write_bytes(bytes(data))

    return damage


def _replace_by_dir(p: Path) -> None:
    p.unlink()
    p.mkdir()


def _duplicate_id(p: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(p)
    ids = table.column("id").to_pylist()
    ids[1] = ids[0]
    table = table.set_column(table.column_names.index("id"), "id", pa.array(ids, pa.string()))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    p.write_bytes(buf.getvalue())


AT_REST: dict[str, Callable[[Path], None]] = {
    "flip_start": _flip(0.0),
    "flip_middle": _flip(0.5),
    "flip_end": _flip(1.0),
    "empty": lambda p: p.write_bytes(b""),
    "half": lambda p: os.truncate(p, p.stat().st_size // 2),
    "appended": lambda p: p.write_bytes(p.read_bytes() + b"\0" * 16),
    "deleted": lambda p: p.unlink(),
    "directory": _replace_by_dir,
}


def _in_place(kind: str) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        size = p.stat().st_size
        if kind == "overwrite_50":
            with open(p, "r+b") as fh:
                fh.seek(size // 2)
                fh.write(bytes(b ^ 0x55 for b in p.read_bytes()[size // 2 : size // 2 + 50]))
        elif kind == "flip_last":
            with open(p, "r+b") as fh:
                fh.seek(size - 1)
                last = fh.read(1)
                fh.seek(size - 1)
                fh.write(bytes([last[0] ^ 1]))
        elif kind == "truncate_half":
            os.truncate(p, size // 2)
        elif kind == "truncate_empty":
            os.truncate(p, 0)
        elif kind == "append":
            with open(p, "ab") as fh:
                fh.write(b"\0" * 64)

    return damage


SERVED = ["overwrite_50", "flip_last", "truncate_half", "truncate_empty", "append"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bit-flips", type=int, default=20, help="random single-bit flips per file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)

    from bcemb.store import EmbeddingStore, StoreError, load_manifest, publish
    from bcemb.store._testing import write_fake_run
    from bcemb.store.errors import StoreUnavailableError
    from bcemb.store.manifest import read_pointer
    from bcemb.store.store import check_store

    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bcemb-corruption-bench-"))
    try:
        run = write_fake_run(work / "run", dims=(8, 12, 16), seed=0)
        clean = work / "clean"
        publish(run, clean, min_probes=32, rows_per_part=32)

        def read_all(root: Path) -> dict[tuple[str, int], object]:
            store = EmbeddingStore(root)
            return {
                (kind, j): store.get(list(store.ids(kind)), kind=kind, version=j).plain()
                for kind in ("user", "item")
                for j in store.versions
            }

        expected = read_all(clean)
        manifest = load_manifest(clean)
        pointer = read_pointer(clean)
        assert manifest is not None and pointer is not None
        files = sorted(manifest.files) + ["CURRENT", pointer[0]]
        counts = {"cases": 0, "named": 0, "not_named": 0, "crashes": 0, "wrong": 0, "served_cases": 0}
        failures: list[str] = []

        def same(got: dict[tuple[str, int], object]) -> bool:
            return all((got[k] == v).all() for k, v in expected.items())  # type: ignore[attr-defined]

        # -------------------------------------------------------------- at rest
        for rel in files:
            ways = dict(AT_REST)
            ways.update({f"bit_{i}": _bit(rng) for i in range(args.bit_flips)})
            if rel.endswith("ids.parquet"):
                ways["duplicate_id"] = _duplicate_id
            for name, damage in ways.items():
                root = work / "case"
                shutil.copytree(clean, root)
                target = root / rel
                before = target.read_bytes()
                damage(target)
                if target.is_file() and target.read_bytes() == before:
                    shutil.rmtree(root)
                    continue  # a no-op damage (cannot happen with these ways; kept honest)
                counts["cases"] += 1
                case = f"{rel} {name}"
                try:
                    report = check_store(root)
                    if not report.ok and any(str(target) in p for p in report.problems):
                        counts["named"] += 1
                    else:
                        counts["not_named"] += 1
                        failures.append(f"not named: {case}: {report.problems}")
                except Exception as err:  # noqa: BLE001 - counted
                    counts["crashes"] += 1
                    failures.append(f"check crashed: {case}: {type(err).__name__}: {err}")
                try:
                    if not same(read_all(root)):
                        counts["wrong"] += 1
                        failures.append(f"wrong vectors: {case}")
                except StoreError:
                    pass  # refused, with a message naming the file (checked above)
                except Exception as err:  # noqa: BLE001 - counted
                    counts["crashes"] += 1
                    failures.append(f"reader crashed: {case}: {type(err).__name__}: {err}")
                shutil.rmtree(root)

        # -------------------------------------------------------------- while served
        latest = manifest.versions[manifest.latest]
        for role in ("user_emb", "item_emb"):
            rel = latest.files[role]
            for name in SERVED:
                root = work / "case"
                shutil.copytree(clean, root)
                store = EmbeddingStore(root)
                _in_place(name)(root / rel)
                counts["cases"] += 1
                counts["served_cases"] += 1
                case = f"{rel} {name} (after opening)"
                try:
                    got = {
                        (kind, j): store.get(list(store.ids(kind)), kind=kind, version=j).plain()
                        for kind in ("user", "item")
                        for j in store.versions
                    }
                    if not same(got):
                        counts["wrong"] += 1
                        failures.append(f"wrong vectors: {case}")
                    else:
                        counts["not_named"] += 1
                        failures.append(f"served unchanged vectors without noticing: {case}")
                except StoreUnavailableError as err:
                    if str(root / rel) in str(err) and err.path == str(root / rel):
                        counts["named"] += 1
                    else:
                        counts["not_named"] += 1
                        failures.append(f"not named: {case}: {err}")
                except Exception as err:  # noqa: BLE001 - counted
                    counts["crashes"] += 1
                    failures.append(f"reader crashed: {case}: {type(err).__name__}: {err}")
                del store
                shutil.rmtree(root)

        for line in failures:
            print("failure:", line)
        print(f"files {len(files)}")
        print(f"served_cases {counts['served_cases']}")
        print(f"corruption_cases {counts['cases']}")
        print(f"bad_file_named {counts['named']}")
        print(f"bad_file_not_named {counts['not_named']}")
        print(f"crashes {counts['crashes']}")
        print(f"wrong_vectors_served {counts['wrong']}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
