"""Changing a store: publish a training run, retire old embeddings, collect garbage.

Every change follows one protocol, so that an interrupted change leaves the store as it was
and a concurrent reader sees either the old or the new state:

1. take the store's write lock (one writer at a time);
2. write every new file into a private staging directory and flush it;
3. rename the new version directories into ``versions/`` (names no manifest refers to yet);
4. write the new manifest ``manifests/<seq>.json`` and flush it;
5. switch ``CURRENT`` to it with an atomic rename: the commit point;
6. only then delete what the new manifest no longer refers to (retired embeddings, the
   previous latest model and graph snapshot).

Stored versions are never rewritten: a change adds version directories and removes files.

The training-run folder it reads::

    RUN/config.json                         method, lam, times, ... (JSON)
    RUN/graph/                              the full graph (bcemb.data.io.save_graph)
    RUN/version_<k>/model.safetensors       M_k
    RUN/version_<k>/transform.safetensors   B_k (k >= 1)
    RUN/version_<k>/embeddings.safetensors  user_emb [U_k, D_k], item_emb [I_k, D_k]
    RUN/version_<k>/metrics.json            (optional)
    RUN/version_<k>/done.json               marks a finished version
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from bcemb import run_folder
from bcemb.data.graph import DataError, EvolvingGraph, FeatureGroup
from bcemb.data.io import load_graph, save_graph
from bcemb.data.splits import TimeSlices
from bcemb.models.graph_input import GraphInput
from bcemb.models.io import load_model, load_transform, read_tensors
from bcemb.store import io as sio
from bcemb.store.errors import IntegrityError, MissingPointerError, PublishError, StoreError
from bcemb.store.manifest import (
    MANIFESTS,
    POINTER,
    VERSIONS,
    FileEntry,
    Manifest,
    VersionEntry,
    load_manifest,
    newest_intact_manifest,
    switch_pointer,
    utc_now,
    write_manifest,
)
from bcemb.utils import read_json

logger = logging.getLogger(__name__)

__all__ = ["collect_garbage", "finished_versions", "publish", "retire", "write_lock"]

_LOCK = ".lock"
_STAGING = ".staging-"
DEFAULT_ROWS_PER_PART = 131_072  # 256 MiB per partition at 512 float32 dimensions


# ----------------------------------------------------------------------------- locking


@contextlib.contextmanager
def write_lock(root: Path, *, timeout: float = 60.0) -> Iterator[None]:
    """Hold the store's exclusive write lock (an ``flock`` on ``.lock``).

    Readers never take it: they follow ``CURRENT``.
    """
    import fcntl  # POSIX only; imported here so that reading works everywhere

    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"another process is changing the store {root} (lock {root / _LOCK} held "
                        f"for more than {timeout:.0f} s)"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _current(root: Path) -> Manifest | None:
    """The store's current manifest for a change (the write lock held).

    A store with manifests but no ``CURRENT`` is not empty: the pointer is restored to the
    newest manifest whose files all verify (that state was complete on disk), or the change
    is refused; it is never treated as empty, which would delete every stored file.
    """
    for folder in (VERSIONS, MANIFESTS):  # a symlinked folder must not lead a change outside
        sio.resolve_in(root, folder)
    try:
        return load_manifest(root)
    except MissingPointerError:
        manifest, sha, skipped = newest_intact_manifest(root)
        switch_pointer(root, manifest, sha)
        logger.warning(
            "%s had no %s: restored it to %s, the newest manifest whose files are all intact%s",
            root,
            POINTER,
            manifest.name,
            f" (passed over: {'; '.join(skipped)})" if skipped else "",
        )
        return manifest


# ----------------------------------------------------------------------------- run folder


finished_versions = run_folder.finished_versions


def _run_config(run_dir: Path) -> dict[str, Any]:
    try:
        return run_folder.read_config(run_dir)
    except run_folder.RunFolderError as err:
        raise PublishError(str(err)) from err


def _read_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        tensors, _ = read_tensors(path)
    except (FileNotFoundError, ValueError) as err:
        raise PublishError(str(err)) from err
    missing = {"user_emb", "item_emb"} - set(tensors)
    if missing:
        raise PublishError(f"{path}: missing tensors {sorted(missing)}")
    user, item = (tensors[n].detach().to(torch.float32).numpy() for n in ("user_emb", "item_emb"))
    if user.ndim != 2 or item.ndim != 2 or user.shape[1] != item.shape[1]:
        raise PublishError(
            f"{path}: user_emb and item_emb must be [N, D] with one D, got {user.shape} and {item.shape}"
        )
    for name, arr in (("user_emb", user), ("item_emb", item)):
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).any(axis=1).sum())
            raise PublishError(f"{path}: {name} holds NaN or infinite values in {bad} rows")
    return user, item


# ----------------------------------------------------------------------------- publish


def publish(
    run_dir: str | Path,
    store_dir: str | Path,
    *,
    keep_all: bool = False,
    probe_fraction: float = 0.01,
    min_probes: int = 256,
    rows_per_part: int = DEFAULT_ROWS_PER_PART,
    seed: int = 0,
    check_model: bool = True,
    same_graph: bool = False,
) -> Manifest:
    """Publish a training run's latest finished version as the store's new latest.

    An empty store receives the run's whole history ``0..K`` (transforms and probe samples
    of every version); a store at version ``L`` receives ``L+1..K`` and must hold the same
    lineage (identical ``B_1..B_L`` and probes of ``z_L``). Only the latest embeddings, model
    and graph snapshot are kept, unless ``keep_all``.

    Args:
        run_dir: The training-run folder (see the module docstring).
        store_dir: The store; created when missing.
        keep_all: Keep every published version's embeddings and model (Keep-All, for the
            disk-usage comparison). Default False (keep-latest).
        probe_fraction: Share of a version's nodes kept as its probe sample. Default 0.01.
        min_probes: Lower bound of the probe sample (capped at the number of nodes).
            Default 256.
        rows_per_part: Rows per Parquet partition of the stored embeddings.
        seed: Seed of the probe sampling (per version ``k``: ``[seed, k]``).
        check_model: Recompute the latest embeddings with the stored model on the stored
            graph snapshot and record the difference (a warning when they disagree).
        same_graph: Record every older ``M_j`` on the latest graph for the latest probes,
            so that ``check`` separates the chain's error from the graph's drift
            (:mod:`bcemb.store.same_graph`). Off by default here; ``bcemb store publish``
            and :func:`bcemb.store.gate.publish_gated` turn it on.

    Returns:
        The new manifest.

    Raises:
        PublishError: The run is unfinished, malformed, already published or not a
            continuation of the store's lineage.

    Example:
        >>> manifest = publish("runs/ml-100k/bc-aligner", "store")
        >>> manifest.latest
        4
    """
    run_dir, root = Path(run_dir), Path(store_dir)
    if not 0.0 <= probe_fraction <= 1.0:
        raise ValueError(f"probe_fraction must be within [0, 1], got {probe_fraction}")
    if min_probes < 1 or rows_per_part < 1:
        raise ValueError(
            f"min_probes and rows_per_part must be positive, got {min_probes}, {rows_per_part}"
        )
    config = _run_config(run_dir)
    finished = finished_versions(run_dir)
    if not finished:
        raise PublishError(f"{run_dir} has no finished version (no version_0/done.json)")
    k_new = finished[-1]
    with write_lock(root):
        current = _current(root)
        # First, so that what an interrupted change left is cleaned even when this publish
        # stops early ("nothing to publish" after a kill just after the pointer switch).
        _collect_garbage(root, current)
        latest = current.latest if current is not None else -1
        if k_new <= latest:
            raise PublishError(
                f"nothing to publish: the store's latest is version {latest} and the run's latest "
                f"finished version is {k_new}"
            )
        graph = _run_graph(run_dir)
        if current is not None:
            _check_lineage(run_dir, root, current, graph)
        staging = root / f"{_STAGING}{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            new_files: dict[str, FileEntry] = {}
            entries = list(current.versions) if current is not None else []
            for k in range(latest + 1, k_new + 1):
                prev_dim = entries[k - 1].dim if k > 0 else None
                entry = _stage_version(
                    run_dir,
                    k,
                    graph,
                    config,
                    staging,
                    new_files,
                    prev_dim=prev_dim,
                    is_latest=k == k_new,
                    keep=keep_all or k == k_new,
                    probe_fraction=probe_fraction,
                    min_probes=min_probes,
                    rows_per_part=rows_per_part,
                    seed=seed,
                    check_model=check_model,
                    same_graph=same_graph,
                )
                entries.append(entry)
            if latest >= 0:
                entries[latest] = entries[latest].superseded(keep_all=keep_all)
            (root / "versions").mkdir(exist_ok=True)
            for k in range(latest + 1, k_new + 1):
                target = root / "versions" / str(k)
                if target.exists():
                    raise StoreError(f"{target} exists although no manifest refers to it")
                os.rename(staging / "versions" / str(k), target)
            sio.fsync_dir(root / "versions")
            pool = {**(current.files if current is not None else {}), **new_files}
            manifest = Manifest(
                seq=current.seq + 1 if current is not None else 0,
                created=utc_now(),
                event="publish",
                latest=k_new,
                versions=tuple(entries),
                files=_referenced(entries, pool),
                run={**config, "path": str(run_dir.resolve())},
                previous=current.name if current is not None else None,
            )
            sha = write_manifest(root, manifest)
            switch_pointer(root, manifest, sha)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _remove_unreferenced(root, current, manifest)
    logger.info(
        "published %s version%s %s to %s (latest %d)",
        run_dir,
        "s" if k_new - latest > 1 else "",
        list(range(latest + 1, k_new + 1)),
        root,
        k_new,
    )
    return manifest


def _run_graph(run_dir: Path) -> EvolvingGraph | None:
    """The run's graph, or None for a run of a model without one (ids come per version)."""
    if not (run_dir / "graph").exists() and run_folder.read_ids(run_dir, 0) is not None:
        return None
    try:
        return load_graph(run_dir / "graph")
    except DataError as err:
        raise PublishError(f"cannot read the run's graph: {err}") from err


def _version_ids(
    run_dir: Path, k: int, graph: EvolvingGraph | None, n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """String ids of version ``k``'s user and item rows (from the graph, or ``ids.parquet``)."""
    vdir = run_folder.version_dir(run_dir, k)
    if graph is not None:
        if n_users > graph.num_users or n_items > graph.num_items:
            raise PublishError(
                f"{vdir}: embeddings of {n_users} users and {n_items} items, but the run's graph has "
                f"{graph.num_users} users and {graph.num_items} items"
            )
        return graph.user_ids[:n_users].astype(str), graph.item_ids[:n_items].astype(str)
    try:
        ids = run_folder.read_ids(run_dir, k)
    except run_folder.RunFolderError as err:
        raise PublishError(str(err)) from err
    if ids is None:
        raise PublishError(f"missing file: {vdir / run_folder.IDS} (a run without graph/ lists its ids)")
    users, items = ids.get("user", []), ids.get("item", [])
    if (len(users), len(items)) != (n_users, n_items):
        raise PublishError(
            f"{vdir / run_folder.IDS}: {len(users)} user and {len(items)} item ids for embeddings of "
            f"{n_users} users and {n_items} items"
        )
    for kind, values in (("user", users), ("item", items)):
        if len(set(values)) != len(values):
            raise PublishError(f"{vdir / run_folder.IDS}: duplicate {kind} ids")
    return np.asarray(users, dtype=str), np.asarray(items, dtype=str)


def _stage_version(
    run_dir: Path,
    k: int,
    graph: EvolvingGraph | None,
    config: dict[str, Any],
    staging: Path,
    files: dict[str, FileEntry],
    *,
    prev_dim: int | None,
    is_latest: bool,
    keep: bool,
    probe_fraction: float,
    min_probes: int,
    rows_per_part: int,
    seed: int,
    check_model: bool,
    same_graph: bool = True,
) -> VersionEntry:
    """Write version ``k``'s files under ``staging/versions/k`` and describe them."""
    vdir = run_dir / f"version_{k}"
    rel = f"versions/{k}"
    out = staging / rel
    out.mkdir(parents=True)
    roles: dict[str, str] = {}

    def record(role: str | None, name: str) -> str:
        path = f"{rel}/{name}"
        local = staging / path
        files[path] = FileEntry(sio.sha256_file(local), local.stat().st_size)
        if role is not None:
            roles[role] = path
        return path

    user_emb, item_emb = _read_embeddings(vdir / "embeddings.safetensors")
    (n_users, dim), n_items = user_emb.shape, item_emb.shape[0]
    user_ids, item_ids = _version_ids(run_dir, k, graph, n_users, n_items)

    transform_config = None
    if k > 0:
        src = vdir / "transform.safetensors"
        try:
            transform = load_transform(src)
        except (FileNotFoundError, ValueError) as err:
            raise PublishError(f"cannot read B_{k}: {err}") from err
        if (transform.in_dim, transform.out_dim) != (dim, prev_dim):
            raise PublishError(
                f"{src}: B_{k} maps {transform.in_dim} -> {transform.out_dim} dimensions, but "
                f"D_{k} = {dim} and D_{k - 1} = {prev_dim}"
            )
        transform_config = transform.to_config()
        sio.copy_file(src, out / "transform.safetensors")
        record("transform", "transform.safetensors")

    # The probe sample: real z_k of a few nodes, kept forever to measure the chain later.
    rng = np.random.default_rng([seed, k])
    n_nodes = n_users + n_items
    n_probes = min(n_nodes, max(min_probes, math.ceil(probe_fraction * n_nodes)))
    pick = np.sort(rng.choice(n_nodes, size=n_probes, replace=False))
    pu, pi = pick[pick < n_users], pick[pick >= n_users] - n_users
    probes = pa.concat_tables(
        [
            sio.embedding_table("user", user_ids[pu], user_emb[pu]),
            sio.embedding_table("item", item_ids[pi], item_emb[pi]),
        ]
    )
    sio.write_table(out / "probes.parquet", probes, {"bcemb.version": str(k)})
    record("probes", "probes.parquet")

    model_src = vdir / "model.safetensors"
    # A run of vectors only (``bcemb adapt``: models we did not train) declares "model": null;
    # its versions have embeddings and transforms but no model to embed new nodes.
    vectors_only = "model" in config and config["model"] is None
    if not model_src.is_file() and not vectors_only:
        raise PublishError(f"missing file: {model_src}")
    parts: list[str] = []
    if keep:
        if not vectors_only:
            sio.copy_file(model_src, out / "model.safetensors")
            record("model", "model.safetensors")
        sio.write_npy(out / "user_emb.npy", user_emb)
        record("user_emb", "user_emb.npy")
        sio.write_npy(out / "item_emb.npy", item_emb)
        record("item_emb", "item_emb.npy")
        ids = pa.table(
            {
                "kind": pa.array(["user"] * n_users + ["item"] * n_items, pa.string()),
                "id": pa.array(np.concatenate([user_ids, item_ids]).astype(object), pa.string()),
            }
        )
        sio.write_table(out / "ids.parquet", ids)
        record("ids", "ids.parquet")
        for kind, ids_k, emb in (("user", user_ids, user_emb), ("item", item_ids, item_emb)):
            for start in range(0, len(ids_k), rows_per_part):
                name = f"embeddings/part-{len(parts):05d}.parquet"
                stop = start + rows_per_part
                table = sio.embedding_table(kind, ids_k[start:stop], emb[start:stop])
                sio.write_table(out / name, table, {"bcemb.version": str(k)})
                parts.append(record(None, name))

    model_check = None
    if is_latest and graph is not None and not vectors_only:  # a graph model embeds new nodes on this snapshot
        snapshot = _snapshot(graph, config, k, n_users, n_items, vdir)
        save_graph(snapshot, out / "graph", overwrite=False)
        for f in sorted((out / "graph").rglob("*")):
            if f.is_file():
                record(None, f"graph/{f.relative_to(out / 'graph').as_posix()}")
        roles["graph"] = f"{rel}/graph"
        if check_model:
            model_check = _check_model(model_src, snapshot, user_emb, item_emb)
        if same_graph:  # M_j on G_K while the run has every M_j (bcemb.store.same_graph)
            from bcemb.store.same_graph import stage_same_graph

            stage_same_graph(run_dir, snapshot, out, record, k, n_users, n_items, probes)

    metrics_path = vdir / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    lam = config.get("lam")
    return VersionEntry(
        version=k,
        parent=k - 1 if k > 0 else None,
        dim=int(dim),
        num_users=int(n_users),
        num_items=int(n_items),
        method=str(config.get("method", "unknown")),
        lam=float(lam) if isinstance(lam, int | float) else None,
        created=utc_now(),
        transform=transform_config,
        files=roles,
        parts=tuple(parts),
        num_probes=int(n_probes),
        model_bytes=0 if vectors_only else model_src.stat().st_size,
        raw_embedding_bytes=4 * n_nodes * int(dim),
        metrics=metrics if isinstance(metrics, dict) else {},
        source={"run": str(run_dir.resolve()), "folder": vdir.name},
        model_check=model_check,
    )


def _snapshot(
    graph: EvolvingGraph, config: dict[str, Any], k: int, n_users: int, n_items: int, vdir: Path
) -> EvolvingGraph:
    """The graph the latest model embeds: edges ``E_k`` over the first users and items."""
    times = config.get("times")
    if not isinstance(times, list) or len(times) < k + 2:
        raise PublishError(
            f"the run's config.json must list the time fractions 'times' (t_0..t_K and the closing t) "
            f"to rebuild the graph of version {k}; got {times!r}"
        )
    try:
        n_edges = TimeSlices(graph, times).num_edges(k)
    except DataError as err:
        raise PublishError(f"cannot slice the run's graph at version {k}: {err}") from err
    user, item = graph.user[:n_edges], graph.item[:n_edges]
    if user.max() >= n_users or item.max() >= n_items:
        raise PublishError(
            f"{vdir}: E_{k} ({n_edges} edges) reaches nodes beyond the {n_users} users and "
            f"{n_items} items embedded; the embeddings do not match the graph at t_{k}"
        )
    groups = {
        name: FeatureGroup(
            g.vocab, g.indices[: g.offsets[n_items]].copy(), g.offsets[: n_items + 1].copy()
        )
        for name, g in graph.item_features.items()
    }
    return EvolvingGraph(
        user=user.copy(),
        item=item.copy(),
        rating=graph.rating[:n_edges].copy(),
        timestamp=graph.timestamp[:n_edges].copy(),
        user_ids=graph.user_ids[:n_users].copy(),
        item_ids=graph.item_ids[:n_items].copy(),
        item_features=groups,
        name=graph.name,
    )


@torch.no_grad()
def _check_model(
    model_path: Path, snapshot: EvolvingGraph, user_emb: np.ndarray, item_emb: np.ndarray
) -> dict[str, Any]:
    """Does ``M_k`` on the stored snapshot give the stored embeddings? (``embed_new`` relies on it)."""
    try:
        model = load_model(model_path)
    except (FileNotFoundError, ValueError) as err:
        raise PublishError(f"cannot load the latest model: {err}") from err
    graph_input = GraphInput.build(
        snapshot, np.arange(snapshot.num_edges), num_users=len(user_emb), num_items=len(item_emb)
    )
    if model.dim != user_emb.shape[1]:
        raise PublishError(
            f"{model_path}: the model has dimension {model.dim}, its embeddings {user_emb.shape[1]}"
        )
    users, items = model(graph_input)
    diff = max(
        float(np.abs(users.numpy() - user_emb).max(initial=0.0)),
        float(np.abs(items.numpy() - item_emb).max(initial=0.0)),
    )
    scale = max(
        float(np.abs(user_emb).max(initial=0.0)), float(np.abs(item_emb).max(initial=0.0)), 1.0
    )
    ok = diff <= 1e-3 * scale
    if not ok:
        logger.warning(
            "the stored model does not reproduce the published embeddings on the graph snapshot "
            "(max abs difference %.3g): embeddings of new nodes will not match stored ones",
            diff,
        )
    return {"max_abs_diff": diff, "ok": ok}


def _check_lineage(run_dir: Path, root: Path, current: Manifest, graph: EvolvingGraph | None) -> None:
    """The run must extend the store's chain: same ``B_1..B_L`` and the same ``z_L`` on its probes."""
    for entry in current.versions[1:]:
        src = run_dir / f"version_{entry.version}" / "transform.safetensors"
        stored_sha = current.files[entry.files["transform"]].sha256
        if not src.is_file() or sio.sha256_file(src) != stored_sha:
            raise PublishError(
                f"the run at {run_dir} is not a continuation of the store {root}: its B_{entry.version} "
                f"differs from the stored one (or is missing)"
            )
    last = current.versions[-1]
    probes_path = root / last.files["probes"]
    sio.verify_file(root, last.files["probes"], current.files[last.files["probes"]].sha256)
    table = sio.read_table(probes_path)
    stored = sio.table_vectors(table, probes_path)
    user_emb, item_emb = _read_embeddings(
        run_dir / f"version_{last.version}" / "embeddings.safetensors"
    )
    if user_emb.shape[1] != last.dim:
        raise PublishError(
            f"the run at {run_dir} is not a continuation of the store {root}: version {last.version} "
            f"has dimension {user_emb.shape[1]} in the run and {last.dim} in the store"
        )
    kinds = table.column("kind").to_numpy(zero_copy_only=False)
    ids = table.column("id").to_numpy(zero_copy_only=False)
    run_ids = _version_ids(run_dir, last.version, graph, len(user_emb), len(item_emb))
    for kind, emb, all_ids in (
        ("user", user_emb, run_ids[0]),
        ("item", item_emb, run_ids[1]),
    ):
        mask = kinds == kind
        index = {v: r for r, v in enumerate(all_ids)}
        rows = [index.get(i, -1) for i in ids[mask]]
        if -1 in rows or not np.allclose(emb[rows], stored[mask], rtol=1e-5, atol=1e-6):
            raise PublishError(
                f"the run at {run_dir} is not a continuation of the store {root}: its version "
                f"{last.version} embeddings differ from the store's probes"
            )


# ----------------------------------------------------------------------------- retire & gc


def retire(store_dir: str | Path, version: int) -> Manifest:
    """Remove an older version's embeddings and model; its transform and probes stay.

    Args:
        store_dir: The store.
        version: A version older than the latest whose embeddings are still kept.

    Returns:
        The new manifest.
    """
    root = Path(store_dir)
    with write_lock(root):
        current = _current(root)
        if current is None:
            raise StoreError(f"{root} is an empty store")
        if not 0 <= version <= current.latest:
            raise StoreError(
                f"unknown version {version}; the store has versions 0..{current.latest}"
            )
        if version == current.latest:
            raise StoreError(f"version {version} is the latest: the store serves its embeddings")
        entry = current.versions[version]
        if not entry.embeddings_kept and not entry.model_kept:
            raise StoreError(f"version {version}'s embeddings and model are already retired")
        entries = list(current.versions)
        entries[version] = entry.retired()
        manifest = replace(
            current,
            seq=current.seq + 1,
            created=utc_now(),
            event="retire",
            versions=tuple(entries),
            files=_referenced(entries, current.files),
            previous=current.name,
        )
        sha = write_manifest(root, manifest)
        switch_pointer(root, manifest, sha)
        _remove_unreferenced(root, current, manifest)
    logger.info("retired the embeddings of version %d in %s", version, root)
    return manifest


def collect_garbage(store_dir: str | Path) -> list[Path]:
    """Delete what interrupted changes left behind (files no manifest refers to).

    A store whose ``CURRENT`` is missing gets it back first (pointing at the newest manifest
    whose files are all intact); if no manifest is intact, nothing is deleted.

    Returns:
        The removed paths.
    """
    root = Path(store_dir)
    if not root.is_dir():
        raise StoreError(f"no store at {root}")
    with write_lock(root):
        return _collect_garbage(root, _current(root))


def _referenced(entries: list[VersionEntry], pool: dict[str, FileEntry]) -> dict[str, FileEntry]:
    """The files the entries refer to, with their checksums from ``pool``."""
    out: dict[str, FileEntry] = {}
    for entry in entries:
        for role, rel in entry.files.items():
            if role == "graph":
                prefix = rel + "/"
                out.update({p: e for p, e in pool.items() if p.startswith(prefix)})
            else:
                out[rel] = pool[rel]
        out.update({p: pool[p] for p in entry.parts})
    return out


def _remove_unreferenced(root: Path, old: Manifest | None, new: Manifest) -> None:
    """Delete the files ``old`` had and ``new`` does not (after the pointer switched)."""
    if old is None:
        return
    for rel in sorted(set(old.files) - set(new.files)):
        try:  # the manifest's paths are checked; a symlinked folder on the way is not followed
            sio.resolve_in(root, rel, parent_only=True).unlink(missing_ok=True)
        except IntegrityError as err:
            logger.warning("not deleting %s", err)
    _prune_empty_dirs(root / VERSIONS)


def _prune_empty_dirs(top: Path) -> None:
    if not top.is_dir():
        return
    for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
        if Path(dirpath) != top and not os.listdir(dirpath):
            os.rmdir(dirpath)


def _collect_garbage(root: Path, current: Manifest | None) -> list[Path]:
    """Remove staging folders, unreferenced version files and never-committed manifests."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for p in root.iterdir():
        if p.name.startswith(_STAGING) or (
            p.name.startswith(f".{POINTER}.") and p.name.endswith(".tmp")
        ):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            removed.append(p)
    keep = set(current.files) if current is not None else set()
    versions = sio.resolve_in(root, VERSIONS)
    if versions.is_dir():
        # os.walk does not follow symlinks: a link is removed (when unreferenced), never
        # what it points at, so a crafted store cannot make gc delete files outside it.
        for dirpath, dirnames, filenames in os.walk(versions):
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in sorted(filenames + links):
                p = Path(dirpath) / name
                rel = p.relative_to(root).as_posix()
                if rel in keep:
                    continue
                if name in links and any(k.startswith(rel + "/") for k in keep):
                    logger.warning("%s is a symlinked folder the manifest reads through; left as is", p)
                    continue
                p.unlink()
                removed.append(p)
        _prune_empty_dirs(versions)
    manifests = sio.resolve_in(root, MANIFESTS)
    if manifests.is_dir():
        for p in manifests.iterdir():
            seq = p.stem
            never_committed = current is None or not seq.isdigit() or int(seq) > current.seq
            if never_committed and (p.is_file() or p.is_symlink()):
                p.unlink()
                removed.append(p)
    if removed:
        logger.info("removed %d leftover file(s) of interrupted changes in %s", len(removed), root)
    return removed
