"""Training-run folders whose chain is exact, for gate, doctor and provenance tests.

Not public API. Built bottom up so that two runs share versions ``0..L`` byte for byte:
version ``k``'s vector of a node is ``[z_{k-1}, r] @ Q_k`` (``r`` fresh coordinates, ``Q_k`` a
random orthogonal matrix) and ``B_k = P^T Q_k^T``-style so that ``B_k(z_k) = z_{k-1}`` exactly
for every node that existed at ``k-1``. Variants of the last version break it in known ways.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from bcemb.data.graph import EvolvingGraph
from bcemb.models.io import save_module
from bcemb.store._testing import write_fake_run
from bcemb.transforms import LinearTransform, TruncateTransform

__all__ = ["LAST_VARIANTS", "write_exact_run"]

#: How the last version may differ: ``exact`` (a compatible release), ``rotated`` (its vectors
#: turned by a random rotation, ``B_K`` unchanged: every consumer breaks), ``non-bc`` (a new
#: random model with a truncation as ``B_K``), ``noisy`` (exact plus small noise).
LAST_VARIANTS = ("exact", "rotated", "non-bc", "noisy")


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def write_exact_run(
    run_dir: str | Path,
    graph: EvolvingGraph | None = None,
    *,
    dims: Sequence[int] = (8, 12, 16),
    upto: int | None = None,
    last: str = "exact",
    noise: float = 0.01,
    seed: int = 0,
) -> Path:
    """A run whose chain maps every version exactly onto the previous one.

    Args:
        run_dir: Where to write.
        graph: The graph (default the store fixtures' tiny graph).
        dims: ``D_0 .. D_K``.
        upto: Finish versions ``0..upto`` only (default all).
        last: One of :data:`LAST_VARIANTS`, applied to version ``upto``.
        noise: Noise scale of the ``noisy`` variant (relative to unit-variance coordinates).
        seed: Version ``k`` draws from ``[seed, k]`` (so runs of one seed share versions).
    """
    if last not in LAST_VARIANTS:
        raise ValueError(f"last must be one of {LAST_VARIANTS}, got {last!r}")
    run = write_fake_run(run_dir, graph, dims=dims, upto=upto, random_embeddings=True, seed=seed)
    upto = len(dims) - 1 if upto is None else upto
    prev: tuple[np.ndarray, np.ndarray] | None = None
    for k in range(upto + 1):
        vdir = run / f"version_{k}"
        from bcemb.models.io import read_tensors

        tensors, _ = read_tensors(vdir / "embeddings.safetensors")
        n_users, n_items = tensors["user_emb"].shape[0], tensors["item_emb"].shape[0]
        rng = np.random.default_rng([seed, k])
        is_last = k == upto
        if prev is None:
            users = rng.standard_normal((n_users, dims[0]))
            items = rng.standard_normal((n_items, dims[0]))
            weight = None
        else:
            q = _orthogonal(dims[k], rng)
            d_prev = dims[k - 1]

            def lift(old: np.ndarray, n: int) -> np.ndarray:
                base = rng.standard_normal((n, dims[k]))
                base[: len(old), :d_prev] = old
                return base @ q  # rows [z_{k-1}, r] turned by q

            users, items = lift(prev[0], n_users), lift(prev[1], n_items)
            # B_k(z) = z @ W^T with W^T = q^T [I; 0]: undo the turn, keep the old coordinates.
            weight = (q.T[:, :d_prev]).T
            if is_last and last == "rotated":
                rot = _orthogonal(dims[k], np.random.default_rng([seed, k, 99]))
                users, items = users @ rot, items @ rot
            elif is_last and last == "noisy":
                users = users + noise * rng.standard_normal(users.shape)
                items = items + noise * rng.standard_normal(items.shape)
            elif is_last and last == "non-bc":
                users = rng.standard_normal(users.shape)
                items = rng.standard_normal(items.shape)
                weight = None
        save_file(
            {
                "user_emb": torch.from_numpy(users.astype(np.float32)),
                "item_emb": torch.from_numpy(items.astype(np.float32)),
            },
            vdir / "embeddings.safetensors",
        )
        if k > 0:
            if weight is None:
                transform = TruncateTransform(dims[k], dims[k - 1])
            else:
                transform = LinearTransform(dims[k], dims[k - 1])
                with torch.no_grad():
                    transform.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
            save_module(vdir / "transform.safetensors", transform, transform.to_config())
        prev = (users, items)
    return run
