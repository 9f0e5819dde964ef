"""Kill -9 during publish: N trials, each a real ``SIGKILL`` of a publishing process.

Half of the trials publish versions 1..2 onto a store at version 1, half publish a whole run
into an empty store (the first publish). Each child process imports bcemb, says it is
ready, and publishes; the parent kills it after a random delay drawn uniformly over 1.5x
the time a fresh child took to publish (measured first, once per kind), so that kills land
in every phase, the commit and the clean-up after it included (some trials finish first). After each kill the store is judged damaged unless

1. a fresh reader sees the old or the new state with exactly the expected vectors (or, for a
   first publish, no committed state: an empty store, or manifests without ``CURRENT``);
2. ``check_store`` finds every file intact (when a state is committed);
3. ``collect_garbage`` and the same publish again bring it to the new state, with exactly
   the expected vectors, a clean check and no file left that the manifest does not list.

Usage:
    python benchmarks/store_kill.py [--trials 30] [--users 20000]

Prints ``name value`` lines; the last is ``damaged_stores N``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys
import bcemb.data.io, bcemb.models.io, bcemb.store.publish, pyarrow.parquet  # imported before "ready"
from bcemb.store import publish
print("ready", flush=True)
publish(sys.argv[1], sys.argv[2], min_probes=64, rows_per_part=4096, check_model=False)
print("done", flush=True)
"""


def _files(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.name != ".lock"
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--dims", default="64,96,128")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    import numpy as np

    from bcemb.store import EmbeddingStore, PublishError, StoreError, collect_garbage, load_manifest, publish
    from bcemb.store._testing import plain_graph, write_fake_run
    from bcemb.store.manifest import manifest_names
    from bcemb.store.store import check_store

    dims = [int(d) for d in args.dims.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bcemb-kill-bench-"))
    rng = random.Random(args.seed)
    opts = {"min_probes": 64, "rows_per_part": 4096, "check_model": False}
    try:
        graph = plain_graph(args.users, args.items)
        v1 = write_fake_run(work / "v1", graph, dims=dims, upto=1, random_embeddings=True)
        v2 = write_fake_run(work / "v2", graph, dims=dims, random_embeddings=True)
        at_v1 = work / "at_v1"
        publish(v1, at_v1, **opts)
        t0 = time.perf_counter()
        publish(v2, shutil.copytree(at_v1, work / "new"), **opts)
        t_next = time.perf_counter() - t0
        t0 = time.perf_counter()
        publish(v2, work / "first", **opts)
        t_first = time.perf_counter() - t0
        probe_ids = list(EmbeddingStore(at_v1).ids("user")[:: max(1, args.users // 50)])

        def child_publish(root: Path) -> subprocess.Popen[str]:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(v2), str(root)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("the child failed to start")
            return child

        # The kill delay is drawn over the time a child takes from "ready" to its exit (a
        # fresh process publishes slower than the warm one above).
        durations = {}
        for first in (False, True):
            root = work / f"calibrate{int(first)}"
            if not first:
                shutil.copytree(at_v1, root)
            child = child_publish(root)
            t0 = time.perf_counter()
            assert child.stdout is not None
            if child.stdout.readline().strip() != "done":  # before the interpreter's exit
                raise RuntimeError("the calibration publish failed")
            durations[first] = time.perf_counter() - t0
            child.wait()
            shutil.rmtree(root)

        def state(root: Path) -> tuple[int, list[np.ndarray]]:
            store = EmbeddingStore(root)
            return store.latest, [store.get(probe_ids, version=j).plain() for j in store.versions]

        expected = {1: state(at_v1)[1], 2: state(work / "new")[1]}
        assert all((a == b).all() for a, b in zip(state(work / "first")[1], expected[2], strict=True))
        print(f"publish_s {t_next:.2f} (onto version 1), {t_first:.2f} (first publish), in-process")
        print(f"child_publish_s {durations[False]:.2f} (onto version 1), {durations[True]:.2f} (first publish)")

        counts = {"killed": 0, "finished_first": 0, "seen_old": 0, "seen_new": 0, "seen_empty": 0,
                  "pointer_restored": 0, "damaged": 0}
        damage: list[str] = []
        for trial in range(args.trials):
            first = trial % 2 == 1
            root = work / f"trial{trial}"
            if not first:
                shutil.copytree(at_v1, root)
            delay = rng.uniform(0.0, 1.5 * durations[first])
            child = child_publish(root)
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            rc = child.wait()
            counts["killed" if rc == -signal.SIGKILL else "finished_first"] += 1
            problems: list[str] = []
            try:  # 1. what a reader sees right after the kill
                try:
                    latest, vectors = state(root)
                except StoreError as err:
                    if not first or (root.exists() and load_manifest_safe(load_manifest, root)):
                        raise
                    counts["seen_empty"] += 1
                    if manifest_names(root):
                        counts["pointer_restored"] += 1
                else:
                    counts["seen_new" if latest == 2 else "seen_old"] += 1
                    if not all((a == b).all() for a, b in zip(vectors, expected[latest], strict=True)):
                        problems.append(f"wrong vectors in state {latest}")
                    report = check_store(root)
                    if not report.ok:
                        problems.append("check: " + "; ".join(report.problems))
                # 3. recovery: gc, then the same publish again
                if root.exists():
                    collect_garbage(root)
                try:
                    publish(v2, root, **opts)
                except PublishError as err:
                    if "nothing to publish" not in str(err):
                        raise
                latest, vectors = state(root)
                if latest != 2 or not all((a == b).all() for a, b in zip(vectors, expected[2], strict=True)):
                    problems.append("wrong state after recovery")
                report = check_store(root)
                if not report.ok:
                    problems.append("check after recovery: " + "; ".join(report.problems))
                m = load_manifest(root)
                assert m is not None
                extra = _files(root) - set(m.files) - {"CURRENT"} - set(manifest_names(root))
                if extra:
                    problems.append(f"files left over: {sorted(extra)[:5]}")
            except Exception as err:  # noqa: BLE001 - a damaged store, reported
                problems.append(f"{type(err).__name__}: {err}")
            if problems:
                counts["damaged"] += 1
                damage.append(f"trial {trial} ({'first' if first else 'onto v1'}, {delay:.2f} s): {problems}")
            shutil.rmtree(root, ignore_errors=True)
        for line in damage:
            print("damage:", line)
        print(f"kill_trials {args.trials}")
        print(f"killed_during_publish {counts['killed']}")
        print(f"finished_before_kill {counts['finished_first']}")
        print(f"reader_saw_old {counts['seen_old']}")
        print(f"reader_saw_new {counts['seen_new']}")
        print(f"reader_saw_nothing_committed {counts['seen_empty']}")
        print(f"pointer_restored_by_gc {counts['pointer_restored']}")
        print(f"summary {json.dumps(counts)}")
        print(f"damaged_stores {counts['damaged']}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def load_manifest_safe(load_manifest, root: Path) -> bool:  # type: ignore[no-untyped-def]
    """Whether a committed state exists (an error that is not 'nothing committed' counts)."""
    from bcemb.store.errors import MissingPointerError

    try:
        return load_manifest(root) is not None
    except MissingPointerError:
        return False


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
