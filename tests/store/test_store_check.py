"""`store check` never crashes on a damaged store: checksums first, every bad file named, exit 1."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bcemb.store import EmbeddingStore, IntegrityError
from bcemb.store.cli import app
from bcemb.store.manifest import FORMAT_VERSION, _pointer_check, read_pointer
from bcemb.store.store import check_store


def duplicate_id(path: Path) -> None:
    table = pq.read_table(path)
    ids = table.column("id").to_pylist()
    ids[1] = ids[0]
    table = table.set_column(table.column_names.index("id"), "id", pa.array(ids, pa.string()))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path.write_bytes(buf.getvalue())


DAMAGE: dict[str, Callable[[Path], None]] = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: os.truncate(p, p.stat().st_size // 2),
    "appended": lambda p: p.write_bytes(p.read_bytes() + b"\0" * 16),
    "flipped": lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 0xFF]) + p.read_bytes()[1:]),
    "deleted": lambda p: p.unlink(),
    "directory": lambda p: (p.unlink(), p.mkdir()),  # type: ignore[func-returns-value]
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize(
    "rel", ["versions/2/user_emb.npy", "versions/2/ids.parquet", "versions/1/transform.safetensors",
            "versions/0/probes.parquet"]
)
def test_check_names_the_damaged_file(store_dir: Path, rel: str, damage: str) -> None:
    DAMAGE[damage](store_dir / rel)
    report = check_store(store_dir)
    assert not report.ok
    assert len(report.problems) == 1 and rel in report.problems[0], report.problems


def test_duplicate_id_is_named_whether_or_not_checksums_match(store_dir: Path) -> None:
    rel = "versions/2/ids.parquet"
    duplicate_id(store_dir / rel)
    report = check_store(store_dir)
    assert [p for p in report.problems if rel in p] == list(report.problems) and report.problems
    # the same file with its checksum updated in a crafted manifest: parsing names it too
    d = json.loads((store_dir / read_pointer(store_dir)[0]).read_text())
    raw = (store_dir / rel).read_bytes()
    d["files"][rel] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    d["seq"] += 1
    name = f"manifests/{d['seq']:06d}.json"
    data = json.dumps(d).encode()
    (store_dir / name).write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (store_dir / "CURRENT").write_text(
        json.dumps({"format_version": FORMAT_VERSION, "manifest": name, "sha256": sha,
                    "check": _pointer_check(name, sha)})
    )
    with pytest.raises(IntegrityError, match=r"ids\.parquet: duplicate user id"):
        EmbeddingStore(store_dir)
    report = check_store(store_dir)
    assert len(report.problems) == 1 and "ids.parquet: duplicate user id" in report.problems[0]


def test_every_bad_file_is_reported(store_dir: Path) -> None:
    bad = ["versions/2/user_emb.npy", "versions/2/item_emb.npy", "versions/1/probes.parquet",
           "versions/2/embeddings/part-00000.parquet"]
    for rel in bad:
        (store_dir / rel).write_bytes(b"")
    report = check_store(store_dir)
    assert sorted(p.split(": ", 1)[0] for p in report.problems) == sorted(
        str(store_dir / rel) for rel in bad
    )


@pytest.mark.parametrize("target", ["CURRENT", "manifest"])
def test_corrupt_pointer_or_manifest_is_reported(store_dir: Path, target: str) -> None:
    manifest = next((store_dir / "manifests").iterdir())
    path = store_dir / "CURRENT" if target == "CURRENT" else manifest
    path.write_bytes(path.read_bytes()[:10])
    report = check_store(store_dir)
    assert not report.ok and str(path) in report.problems[0]


def test_cli_check_exits_1_and_names_files(store_dir: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["check", "--store", str(store_dir)])
    assert ok.exit_code == 0, ok.output
    (store_dir / "versions/2/user_emb.npy").write_bytes(b"")
    duplicate_id(store_dir / "versions/2/ids.parquet")
    bad = runner.invoke(app, ["check", "--store", str(store_dir)])
    assert bad.exit_code == 1
    assert "user_emb.npy" in bad.output and "ids.parquet" in bad.output
    assert "Traceback" not in bad.output and "Aborted" not in bad.output
    ls = runner.invoke(app, ["ls", "--store", str(store_dir)])
    assert ls.exit_code == 1 and ls.output.startswith("error: ") and "Traceback" not in ls.output
    shutil.rmtree(store_dir / "versions")
    gone = runner.invoke(app, ["check", "--store", str(store_dir)])
    assert gone.exit_code == 1 and "missing file" in gone.output


def test_cli_gc_restores_a_missing_pointer(store_dir: Path) -> None:
    (store_dir / "CURRENT").unlink()
    runner = CliRunner()
    ls = runner.invoke(app, ["ls", "--store", str(store_dir)])
    assert ls.exit_code == 1 and "store gc" in ls.output
    gc = runner.invoke(app, ["gc", "--store", str(store_dir)])
    assert gc.exit_code == 0 and "restored" in gc.output and "removed 0 leftover" in gc.output
    assert runner.invoke(app, ["check", "--store", str(store_dir)]).exit_code == 0
