"""Post-hoc backward transforms between two sets of vectors from models we did not train.

Given ``OLD`` (ver-(k-1)) and ``NEW`` (ver-k) vectors of partly the same ids, fit ``B`` with
``B(new) ~ old`` on a part of the shared ids and report, on the held-out rest, what a consumer
of the old vectors keeps when it is served ``B(new)`` instead:

* **retrieval**: an exact inner-product index over the OLD vectors (cosine: rows normalised),
  queried with ``B(new_i)`` of held-out ids. ``neighbour_recall@10`` is the share of the top 10
  that old-vs-old retrieval (``old_i`` as the query) returns, so old-vs-old is 1 by
  construction and the figure is its fraction; ``self_recall@10`` is the share of queries that
  find their own old vector among the top 10 (1 for old-vs-old).
* **linear probe** (with a label column): a logistic regression trained on OLD vectors of the
  fitting ids, its accuracy on held-out ids with old vectors and with ``B(new)``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from bcemb.compat.vectors import Vectors
from bcemb.transforms import TRANSFORMS, BackwardTransform
from bcemb.transforms.fit import fit_transform

logger = logging.getLogger(__name__)

__all__ = ["FAMILIES", "AdaptReport", "adapt", "build_family", "retrieval_report", "probe_report"]

#: ``--family`` -> transform registry name.
FAMILIES: dict[str, str] = {"procrustes": "orthogonal", "linear": "linear", "low-rank": "low-rank", "mlp": "mlp"}


@dataclass
class AdaptReport:
    """What fitting ``B`` on shared ids gave, measured on held-out ids.

    Attributes:
        family: ``procrustes``, ``linear``, ``low-rank`` or ``mlp``.
        old_dim: ``D_{k-1}``.
        new_dim: ``D_k``.
        shared: Ids in both files (of the same kind).
        fit_ids: Ids ``B`` was fitted on.
        holdout_ids: Ids held out for the report.
        fit: How the fit went (closed form or Adam, steps, errors).
        holdout_mse: Mean squared error per coordinate of ``B(new)`` vs ``old`` on held-out ids.
        holdout_relative_error: Mean ``||B(new) - old||`` over mean ``||old||`` (held out).
        retrieval: ``neighbour_recall@10`` and ``self_recall@10`` (see the module docstring),
            and the index size.
        probe: Linear-probe accuracies (old vectors, ``B(new)``, their ratio) or None.
    """

    family: str
    old_dim: int
    new_dim: int
    shared: int
    fit_ids: int
    holdout_ids: int
    fit: dict[str, Any] = field(default_factory=dict)
    holdout_mse: float = float("nan")
    holdout_relative_error: float = float("nan")
    retrieval: dict[str, float] = field(default_factory=dict)
    probe: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def build_family(family: str, in_dim: int, out_dim: int, *, rank: int = 16, hidden: int = 128) -> BackwardTransform:
    """A fresh transform of a ``--family`` (``rank``: low-rank only; ``hidden``: mlp only)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    extra: dict[str, int] = {"rank": rank} if family == "low-rank" else {"hidden": hidden} if family == "mlp" else {}
    return TRANSFORMS.get(FAMILIES[family])(in_dim, out_dim, **extra)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _top_k(queries: np.ndarray, index: np.ndarray, k: int, exclude: np.ndarray | None, chunk: int = 2048) -> np.ndarray:
    """Rows of ``index`` with the ``k`` largest inner products per query (exact), best first;
    ``exclude[q]`` is an index row a query may not return (its own id)."""
    k = min(k, index.shape[0] - (exclude is not None))
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], chunk):
        scores = queries[start : start + chunk] @ index.T
        if exclude is not None:
            scores[np.arange(scores.shape[0]), exclude[start : start + chunk]] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def retrieval_report(old_index: np.ndarray, query_rows: np.ndarray, mapped: np.ndarray, *, k: int = 10) -> dict[str, float]:
    """Retrieval over an exact cosine index of OLD vectors with mapped NEW queries.

    Args:
        old_index: OLD vectors of every indexed id. Shape ``[M, D_old]``.
        query_rows: Row in ``old_index`` of each query's own id. Shape ``[Q]``.
        mapped: ``B(new)`` of the query ids. Shape ``[Q, D_old]``.
        k: Cut-off.

    Returns:
        ``neighbour_recall@k`` (overlap with old-vs-old's top k, own id excluded from both),
        ``self_recall@k`` (own old vector within the top k), ``index_size``, ``queries``.
    """
    index = _normalise(old_index.astype(np.float32))
    q_new = _normalise(mapped.astype(np.float32))
    truth = _top_k(index[query_rows], index, k, query_rows)
    got = _top_k(q_new, index, k, query_rows)
    overlap = np.mean([len(np.intersect1d(a, b)) / truth.shape[1] for a, b in zip(got, truth, strict=True)])
    own = _top_k(q_new, index, k, None)
    self_hits = float(np.mean((own == query_rows[:, None]).any(axis=1)))
    return {f"neighbour_recall@{k}": float(overlap), f"self_recall@{k}": self_hits,
            "index_size": int(index.shape[0]), "queries": int(len(query_rows))}


def probe_report(
    old_fit: np.ndarray, y_fit: np.ndarray, old_test: np.ndarray, mapped_test: np.ndarray, y_test: np.ndarray, *, seed: int = 0
) -> dict[str, float]:
    """A linear probe trained on OLD vectors; accuracy on held-out old vs ``B(new)`` vectors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_fit)) < 2:
        raise ValueError("the label column has one class among the fitting ids: no probe to train")
    scaler = StandardScaler().fit(old_fit)
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(scaler.transform(old_fit), y_fit)
    acc_old = float(clf.score(scaler.transform(old_test), y_test))
    acc_new = float(clf.score(scaler.transform(mapped_test), y_test))
    return {"accuracy_old": acc_old, "accuracy_transformed": acc_new,
            "ratio": acc_new / acc_old if acc_old > 0 else float("nan"), "classes": int(len(np.unique(y_fit)))}


def adapt(
    old: Vectors,
    new: Vectors,
    family: str,
    *,
    holdout: float = 0.2,
    seed: int = 0,
    rank: int = 16,
    hidden: int = 128,
    k: int = 10,
) -> tuple[BackwardTransform, AdaptReport]:
    """Fit ``B: NEW -> OLD`` on shared ids and measure it on held-out ones.

    Args:
        old: The older version's vectors (what consumers were built on).
        new: The newer version's vectors.
        family: ``procrustes`` (closed form), ``linear`` (least squares), ``low-rank``
            (reduced-rank regression) or ``mlp`` (Adam, early stopping).
        holdout: Share of the shared ids held out for the report (at least one id each side).
        seed: Seed of the split and of the Adam fit.
        rank: Rank of the low-rank family.
        hidden: Hidden width of the mlp family.
        k: Cut-off of the retrieval report.

    Returns:
        The fitted transform (gradients off) and the report.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be within (0, 1), got {holdout}")
    old_keys = [f"{kd}\0{i}" for kd, i in zip(old.kinds, old.ids, strict=True)]
    new_keys = [f"{kd}\0{i}" for kd, i in zip(new.kinds, new.ids, strict=True)]
    old_row = {key: r for r, key in enumerate(old_keys)}
    shared_new = np.array([r for r, key in enumerate(new_keys) if key in old_row], dtype=np.int64)
    if len(shared_new) < 10:
        raise ValueError(f"the two files share {len(shared_new)} ids (of the same kind); at least 10 are needed")
    shared_old = np.array([old_row[new_keys[r]] for r in shared_new], dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(shared_new))
    n_hold = min(max(1, int(round(holdout * len(perm)))), len(perm) - 1)
    hold, fit_idx = perm[:n_hold], perm[n_hold:]
    transform = build_family(family, new.dim, old.dim, rank=rank, hidden=hidden)
    z_new = torch.from_numpy(new.vectors[shared_new[fit_idx]])
    z_old = torch.from_numpy(old.vectors[shared_old[fit_idx]])
    torch.manual_seed(seed)
    fit = fit_transform(transform, z_new, z_old, seed=seed)
    transform.requires_grad_(False).eval()
    with torch.no_grad():
        mapped = transform(torch.from_numpy(new.vectors[shared_new[hold]])).numpy()
    truth = old.vectors[shared_old[hold]]
    err = np.linalg.norm(mapped - truth, axis=1)
    report = AdaptReport(
        family=family, old_dim=old.dim, new_dim=new.dim, shared=len(shared_new),
        fit_ids=len(fit_idx), holdout_ids=n_hold, fit=asdict(fit),
        holdout_mse=float(np.mean((mapped - truth) ** 2)),
        holdout_relative_error=float(err.mean() / max(np.linalg.norm(truth, axis=1).mean(), 1e-12)),
    )
    # The consumer's index: every OLD vector of the queries' kind.
    for kind in ("item", "user"):
        q = np.array([i for i in range(n_hold) if old.kinds[shared_old[hold[i]]] == kind], dtype=np.int64)
        if len(q):
            rows_of_kind = np.flatnonzero(old.kinds == kind)
            position = {r: p for p, r in enumerate(rows_of_kind)}
            query_rows = np.array([position[r] for r in shared_old[hold[q]]], dtype=np.int64)
            if len(rows_of_kind) > k:
                report.retrieval[kind] = retrieval_report(old.vectors[rows_of_kind], query_rows, mapped[q], k=k)
    if old.labels is not None or new.labels is not None:
        labels = old.labels if old.labels is not None else new.labels
        rows = shared_old if old.labels is not None else shared_new
        y = np.asarray([None if v is None else str(v) for v in labels[rows]], dtype=object)
        # rows without a label (for example users when only items are labelled) are left out
        f, h = np.array([v is not None for v in y[fit_idx]]), np.array([v is not None for v in y[hold]])
        if f.any() and h.any():
            report.probe = probe_report(
                old.vectors[shared_old[fit_idx]][f], y[fit_idx][f], truth[h], mapped[h], y[hold][h], seed=seed
            )
    logger.info("adapt %s: %s", family, report.to_dict())
    return transform, report
