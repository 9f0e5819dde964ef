"""Post-hoc adapters on pairs made in code: each family recovers what it can (issue 10 point 5)."""

from __future__ import annotations

import numpy as np
import pytest

from bcemb.compat import Vectors, adapt


def _pair(kind: str, seed: int, n: int = 1500, d_new: int = 20, d_old: int = 16):
    rng = np.random.default_rng(seed)
    # clustered data, so that neighbours and labels mean something
    centres = rng.normal(size=(8, d_new))
    label = rng.integers(0, 8, n)
    new = (centres[label] + 0.6 * rng.normal(size=(n, d_new))).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(d_new, d_new)))
    if kind == "rotation":  # a known semi-orthogonal map plus noise
        old = new @ q[:d_old].T + 0.02 * rng.normal(size=(n, d_old))
    elif kind == "warp":  # a smooth non-linear warp of a rotation
        r = new @ q[:d_old].T
        old = np.tanh(r) + 0.3 * np.sin(2 * r[:, ::-1]) + 0.01 * rng.normal(size=(n, d_old))
    else:
        raise ValueError(kind)
    ids = np.array([f"x{i}" for i in range(n)], dtype=object)
    items = np.full(n, "item", dtype=object)
    labels = np.array([f"c{c}" for c in label], dtype=object)
    return Vectors(ids, old.astype(np.float32), items, labels), Vectors(ids, new, items)


@pytest.mark.parametrize("family", ["procrustes", "linear"])
def test_rotation_plus_noise_is_recovered(family: str, seed: int) -> None:
    old, new = _pair("rotation", seed)
    transform, rep = adapt(old, new, family, seed=seed)
    assert rep.shared == 1500 and rep.holdout_ids == 300 and rep.fit["method"] == "closed-form"
    assert rep.holdout_relative_error < 0.02
    r = rep.retrieval["item"]
    assert r["self_recall@10"] == 1.0 and r["neighbour_recall@10"] > 0.9
    assert rep.probe is not None and rep.probe["ratio"] > 0.97
    if family == "procrustes":
        m = transform.matrix().numpy()
        assert np.allclose(m @ m.T, np.eye(16), atol=1e-5)


def test_low_rank_recovers_a_truncation_plus_low_rank_change(seed: int) -> None:
    rng = np.random.default_rng(seed)
    new = rng.normal(size=(1200, 20)).astype(np.float32)
    change = rng.normal(size=(16, 3)) @ rng.normal(size=(3, 20)) * 0.3
    old_x = new @ (np.eye(16, 20) + change).T
    ids = np.array([str(i) for i in range(1200)], dtype=object)
    kinds = np.full(1200, "item", dtype=object)
    _, rep = adapt(Vectors(ids, old_x.astype(np.float32), kinds), Vectors(ids, new, kinds), "low-rank", rank=3)
    assert rep.holdout_relative_error < 1e-3
    _, rep1 = adapt(Vectors(ids, old_x.astype(np.float32), kinds), Vectors(ids, new, kinds), "low-rank", rank=1)
    assert rep1.holdout_relative_error > 10 * rep.holdout_relative_error  # rank 1 cannot


def test_nonlinear_warp_mlp_beats_linear(seed: int) -> None:
    old, new = _pair("warp", seed, n=3000)
    _, lin = adapt(old, new, "linear", seed=seed)
    _, mlp = adapt(old, new, "mlp", seed=seed, hidden=128)
    _, orth = adapt(old, new, "procrustes", seed=seed)
    assert mlp.fit["method"] == "adam"
    assert mlp.holdout_mse < 0.5 * lin.holdout_mse
    assert lin.holdout_mse <= orth.holdout_mse * 1.001  # least squares is the best linear map
    assert mlp.retrieval["item"]["neighbour_recall@10"] > lin.retrieval["item"]["neighbour_recall@10"]


def test_only_shared_ids_of_the_same_kind_are_used(seed: int) -> None:
    old, new = _pair("rotation", seed, n=200)
    kinds = new.kinds.copy()
    kinds[:50] = "user"  # the same ids, but users in NEW: not shared
    new2 = Vectors(np.concatenate([new.ids, ["extra"]]), np.vstack([new.vectors, new.vectors[:1]]),
                   np.concatenate([kinds, ["item"]]))
    _, rep = adapt(old, new2, "linear")
    assert rep.shared == 150
    with pytest.raises(ValueError, match="share 0 ids"):
        adapt(old, Vectors(np.array(["a"] * 1, dtype=object), new.vectors[:1], np.array(["item"], dtype=object)), "linear")
    with pytest.raises(ValueError, match="unknown family"):
        adapt(old, new, "spline")
