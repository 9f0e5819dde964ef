"""Publish adapted vectors into the keep-latest store as its next version (no model)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from bcemb import run_folder
from bcemb.compat.vectors import Vectors
from bcemb.models.io import save_module
from bcemb.store import io as sio
from bcemb.store.manifest import Manifest, load_manifest
from bcemb.store.publish import publish
from bcemb.transforms import BackwardTransform

__all__ = ["publish_adapted"]


def _rows(v: Vectors) -> tuple[dict[str, list[str]], dict[str, torch.Tensor]]:
    ids, emb = {}, {}
    for kind in ("user", "item"):
        mask = v.kinds == kind
        ids[kind] = [str(i) for i in v.ids[mask]]
        emb[f"{kind}_emb"] = torch.from_numpy(np.ascontiguousarray(v.vectors[mask])).reshape(-1, v.dim)
    return ids, emb


def publish_adapted(
    store: str | Path, old: Vectors, new: Vectors, transform: BackwardTransform, *, family: str, report: dict | None = None
) -> Manifest:
    """Publish ``new`` with ``B = transform`` (NEW -> OLD) as the store's next version.

    An empty store first receives ``old`` as version 0. A store at version ``L`` must hold
    ``old`` as its latest vectors (checked on the store's probe sample of ``z_L``); ``new``
    becomes ``L + 1``. The versions have no model (``store ls`` shows ``model none``).

    Raises:
        bcemb.store.PublishError: The store's latest vectors are not ``old``, or another
            publish rule is broken.
    """
    root = Path(store)
    current = load_manifest(root) if root.exists() else None
    latest = current.latest if current is not None else 0
    with tempfile.TemporaryDirectory(prefix="bcemb-adapt-") as tmp:
        run = Path(tmp) / "run"
        run_folder.claim(run, {"method": f"adapt-{family}", "model": None, "lam": None,
                               "adapt": report or {}})
        for k in range(latest + 2):
            vdir = run_folder.version_dir(run, k)
            vdir.mkdir(parents=True)
            if k >= 1 and k <= latest and current is not None:
                rel = current.versions[k].files["transform"]
                shutil.copyfile(sio.verify_file(root, rel, current.files[rel].sha256), vdir / run_folder.TRANSFORM)
            if k < latest:  # not read: the store keeps these; a run without graph/ lists ids
                run_folder.write_ids(vdir, {"user": [], "item": []})
            if k == latest:
                ids, emb = _rows(old)
                run_folder.write_ids(vdir, ids)
                run_folder.write_embeddings(vdir, emb)
            if k == latest + 1:
                ids, emb = _rows(new)
                run_folder.write_ids(vdir, ids)
                run_folder.write_embeddings(vdir, emb)
                save_module(vdir / run_folder.TRANSFORM, transform, transform.to_config())
            run_folder.write_version_record(vdir, {"k": k, **({"adapt": report} if report and k == latest + 1 else {})}, [])
            run_folder.mark_done(vdir, k)
        return publish(run, root)
