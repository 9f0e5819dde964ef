"""Registered consumers: frozen downstream models kept in the store next to their version.

A consumer was trained on (or registered against) the vectors of one version ``j`` and is
never retrained. The store keeps it with a labelled probe set and its baseline metric, so
that a new version can be checked against it before it is published (:mod:`bcemb.store.gate`).

Kinds (a registry, :data:`KINDS`):

- ``mlp``: the task MLP that ``bcemb benchmark`` trains (:class:`~bcemb.models.mlp.ConsumerMLP`),
  weights in safetensors, its sizes in the config;
- ``torch``: a user's torch module, weights in safetensors and a config naming a known
  architecture (:data:`ARCHITECTURES`) with its keyword arguments; never pickle;
- ``linear``: a linear model, ``coef`` ``[C, D]`` or ``[D]`` and optional ``intercept`` in
  safetensors (scikit-learn's attribute names);
- ``retrieval``: query and target ids with the top-K targets of every query in version
  ``j``'s space recorded (and optionally the relevant targets of each query).

Inputs of the model kinds are the vectors of a ``user``, an ``item`` or an ``edge`` (the user's
vector then the item's, concatenated). Metrics (:data:`METRICS`): ``roc_auc`` and ``accuracy``
for models, ``recall@K`` and ``overlap@K`` for retrieval.

Every probe table may carry a ``baseline_score`` column: the consumer's per-row scores
(retrieval: per-query metric) in the space it was registered against, recorded at
registration (:func:`measure_baseline`), so that the gate can resample baseline and candidate
rows together (:mod:`bcemb.store.bootstrap`).

On disk, under the store root (the manifest does not list consumers; they have their own
registry, changed under the store's write lock and replaced atomically)::

    consumers/registry.json          every consumer's description and the sha256 of its files
    consumers/<name>.<token>/...     its files: weights.safetensors, probes.parquet,
                                     queries.parquet, targets.parquet
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save as st_save
from torch import nn

from bcemb.models.io import read_tensors
from bcemb.models.mlp import ConsumerMLP
from bcemb.store import io as sio
from bcemb.store.bootstrap import RowScores
from bcemb.store.errors import IntegrityError, StoreError
from bcemb.store.manifest import utc_now

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_THRESHOLD",
    "INPUTS",
    "BASELINE_COLUMN",
    "KINDS",
    "METRICS",
    "RULES",
    "Consumer",
    "ConsumerDraft",
    "ConsumerError",
    "ConsumerRegistry",
    "LoadedConsumer",
    "View",
    "baseline_rows",
    "evaluate",
    "measure_baseline",
    "score_rows",
]

#: Default largest relative drop of a consumer's metric before the gate refuses (2 %).
DEFAULT_THRESHOLD = 0.02
#: What a model consumer takes as input.
INPUTS = ("user", "item", "edge")
#: Decision rules of the gate: ``interval`` refuses when the drop's bootstrap interval lies
#: above the threshold (its lower end exceeds it), ``point`` when the measured drop does.
RULES = ("interval", "point")
#: Column of a probe (or query) table holding the baseline's per-row scores.
BASELINE_COLUMN = "baseline_score"
REGISTRY = "consumers/registry.json"
_DIR = "consumers"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# 2: consumers may carry a decision rule (format 1 registries are read as they are).
_FORMAT = 2

#: ``view(kind, ids, version) -> [len(ids), D_version]``: a source of ver-j compatible vectors.
View = Callable[[str, list[str], int], np.ndarray]


class ConsumerError(StoreError, ValueError):
    """A consumer cannot be registered, found or evaluated (the message says why)."""


# ----------------------------------------------------------------------------- descriptions


@dataclass(frozen=True)
class Consumer:
    """A registered consumer as the registry describes it.

    Attributes:
        name: Unique name in the store.
        kind: One of :data:`KINDS`.
        version: ``j``, the version whose space it consumes.
        input: ``user``, ``item`` or ``edge`` (retrieval: the query kind).
        metric: ``roc_auc``, ``accuracy``, ``recall@K`` or ``overlap@K``.
        threshold: Largest relative drop of the metric the gate accepts.
        baseline: The metric on the probe set in the space it was registered against.
        space: Fingerprint of that space.
        config: Kind-specific settings (architecture, sizes, ``k``, target kind).
        files: Role -> ``{"path", "sha256", "bytes"}`` (paths relative to the store root).
        created: ISO-8601 UTC.
        source: Where it came from (for example ``auto: task user_activity``).
        num_probes: Rows of its probe set (queries for retrieval).
        rule: Its decision rule (one of :data:`RULES`; None: the gate's default).
    """

    name: str
    kind: str
    version: int
    input: str
    metric: str
    threshold: float
    baseline: float
    space: str
    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = ""
    source: str = ""
    num_probes: int = 0
    rule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Consumer:
        """Inverse of :meth:`to_dict`."""
        return Consumer(**dict(d))


@dataclass
class ConsumerDraft:
    """A consumer not yet in a store: its description and its payload in memory.

    Attributes:
        name: See :class:`Consumer`.
        kind: See :class:`Consumer`.
        version: See :class:`Consumer`.
        input: See :class:`Consumer`.
        metric: See :class:`Consumer`.
        config: See :class:`Consumer`.
        tensors: Weights (``mlp``, ``torch``, ``linear``).
        tables: Role -> Arrow table (``probes``; ``queries`` and ``targets`` for retrieval).
        threshold: See :class:`Consumer`.
        baseline: Measured at registration when None.
        source: See :class:`Consumer`.
        rule: See :class:`Consumer`.
    """

    name: str
    kind: str
    version: int
    input: str
    metric: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    tables: dict[str, pa.Table] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD
    baseline: float | None = None
    source: str = ""
    rule: str | None = None

    def validate(self) -> None:
        """Raise :class:`ConsumerError` naming the first problem."""
        if not _NAME.match(self.name):
            raise ConsumerError(
                f"invalid consumer name {self.name!r}: letters, digits, '_', '.', '-' (1-64 chars)"
            )
        if self.kind not in KINDS:
            raise ConsumerError(f"unknown consumer kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.input not in INPUTS:
            raise ConsumerError(f"unknown input {self.input!r}; valid: {', '.join(INPUTS)}")
        if not isinstance(self.version, int) or self.version < 0:
            raise ConsumerError(f"version must be a non-negative integer, got {self.version!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise ConsumerError(f"threshold must be within [0, 1), got {self.threshold}")
        check_rule(self.rule)
        name, k = parse_metric(self.metric)
        retrieval = self.kind == "retrieval"
        if retrieval != (name in ("recall", "overlap")):
            raise ConsumerError(
                f"metric {self.metric!r} does not fit a {self.kind} consumer "
                f"({'recall@K or overlap@K' if retrieval else 'roc_auc or accuracy'})"
            )
        KINDS[self.kind].check(self)

    def probe_count(self) -> int:
        """Rows of the probe set."""
        table = self.tables.get(probe_role(self.kind))
        return 0 if table is None else table.num_rows


def probe_role(kind: str) -> str:
    """The table whose rows the gate resamples: ``queries`` (retrieval) or ``probes``."""
    return "queries" if kind == "retrieval" else "probes"


def check_rule(rule: str | None) -> None:
    """Raise :class:`ConsumerError` unless ``rule`` is None or one of :data:`RULES`."""
    if rule is not None and rule not in RULES:
        raise ConsumerError(f"unknown decision rule {rule!r}; valid: {', '.join(RULES)}")


# ----------------------------------------------------------------------------- metrics


def parse_metric(metric: str) -> tuple[str, int | None]:
    """``("recall", 50)`` for ``"recall@50"``, ``("roc_auc", None)`` for ``"roc_auc"``."""
    name, _, k = metric.partition("@")
    if name not in METRICS:
        raise ConsumerError(f"unknown metric {metric!r}; valid: roc_auc, accuracy, recall@K, overlap@K")
    if name in ("recall", "overlap"):
        if not k.isdigit() or int(k) < 1:
            raise ConsumerError(f"metric {metric!r} needs a positive K, as in {name}@10")
        return name, int(k)
    if k:
        raise ConsumerError(f"metric {name} takes no @K, got {metric!r}")
    return name, None


def _check_scores(metric: str, scores: np.ndarray) -> None:
    if metric == "roc_auc" and scores.ndim != 1:
        raise ConsumerError(f"roc_auc needs one score per row, the model gives {scores.shape[1:]}")


def _row_metric(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """``(labels, scores) -> value`` of a model metric, through its bootstrap statistic."""

    def metric(labels: np.ndarray, scores: np.ndarray) -> float:
        scores = np.asarray(scores, dtype=np.float64)
        _check_scores(name, scores)
        return RowScores(name, scores, np.asarray(labels)).value() if len(labels) else float("nan")

    return metric


#: Model metrics: ``(labels [N], scores [N] or [N, C]) -> value``; retrieval metrics are
#: computed by :func:`_evaluate_retrieval` (their entry is None).
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float] | None] = {
    "roc_auc": _row_metric("roc_auc"),
    "accuracy": _row_metric("accuracy"),
    "recall": None,
    "overlap": None,
}


# ----------------------------------------------------------------------------- architectures


def _mlp(in_features: int, sizes: list[int], out_features: int = 1) -> nn.Module:
    layers: list[nn.Module] = []
    d = int(in_features)
    for h in sizes:
        layers += [nn.Linear(d, int(h)), nn.ReLU()]
        d = int(h)
    layers.append(nn.Linear(d, int(out_features)))
    return nn.Sequential(*layers)


#: Torch architectures a ``torch`` consumer may name: ``name -> builder(**config)``.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "consumer-mlp": lambda in_dim, hidden=256, dropout=0.0, num_hidden=1: ConsumerMLP(
        int(in_dim), int(hidden), float(dropout), int(num_hidden)
    ),
    "linear": lambda in_features, out_features=1: nn.Linear(int(in_features), int(out_features)),
    "mlp": _mlp,
}


def _build_module(architecture: str, kwargs: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> nn.Module:
    if architecture not in ARCHITECTURES:
        raise ConsumerError(
            f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    try:
        module = ARCHITECTURES[architecture](**kwargs)
        module.load_state_dict(dict(tensors))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConsumerError(f"the weights do not fit architecture {architecture!r} {dict(kwargs)}: {err}") from err
    return module.eval()


def _torch_predict(module: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        out = module(torch.as_tensor(np.asarray(x, dtype=np.float32)))
        out = out.detach().float().numpy()
        return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out

    return predict


@dataclass(frozen=True)
class _Kind:
    """How one consumer kind is checked and turned into a scorer."""

    check: Callable[[ConsumerDraft], None]
    scorer: Callable[[Consumer, dict[str, torch.Tensor]], Callable[[np.ndarray], np.ndarray]] | None


def _check_model_draft(d: ConsumerDraft) -> None:
    if "probes" not in d.tables:
        raise ConsumerError(f"consumer {d.name}: a labelled probe set is needed")
    cols = set(d.tables["probes"].column_names)
    need = {"user_id", "item_id", "label"} if d.input == "edge" else {"id", "label"}
    if not need <= cols:
        raise ConsumerError(
            f"consumer {d.name}: the probe set of an {d.input} consumer needs columns "
            f"{sorted(need)}, got {sorted(cols)}"
        )
    if d.tables["probes"].num_rows < 2:
        raise ConsumerError(f"consumer {d.name}: the probe set needs at least 2 rows")
    if not d.tensors:
        raise ConsumerError(f"consumer {d.name}: no weights")
    probe = Consumer(d.name, d.kind, d.version, d.input, d.metric, d.threshold, 0.0, "", d.config)
    KINDS[d.kind].scorer(probe, d.tensors)  # type: ignore[misc]  # builds it: the weights must fit


def _check_retrieval_draft(d: ConsumerDraft) -> None:
    for role, cols in (("queries", {"query"}), ("targets", {"id"})):
        if role not in d.tables:
            raise ConsumerError(f"consumer {d.name}: a retrieval consumer needs a {role} table")
        if not cols <= set(d.tables[role].column_names):
            raise ConsumerError(f"consumer {d.name}: the {role} table needs columns {sorted(cols)}")
    if d.input != "user" and d.input != "item":
        raise ConsumerError(f"consumer {d.name}: retrieval queries are users or items")
    if d.config.get("target_kind", "item") not in ("user", "item"):
        raise ConsumerError(f"consumer {d.name}: target_kind must be user or item")


def _mlp_scorer(c: Consumer, tensors: dict[str, torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    cfg = {k: c.config[k] for k in ("in_dim", "hidden", "dropout", "num_hidden") if k in c.config}
    return _torch_predict(_build_module("consumer-mlp", cfg, tensors))


def _module_scorer(c: Consumer, tensors: dict[str, torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    arch = c.config.get("architecture")
    kwargs = {k: v for k, v in c.config.items() if k != "architecture"}
    return _torch_predict(_build_module(str(arch), kwargs, tensors))


def _linear_scorer(c: Consumer, tensors: dict[str, torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    if "coef" not in tensors:
        raise ConsumerError(f"consumer {c.name}: a linear model needs a 'coef' tensor")
    coef = tensors["coef"].detach().double().numpy()
    intercept = tensors["intercept"].detach().double().numpy() if "intercept" in tensors else None
    if coef.ndim not in (1, 2):
        raise ConsumerError(f"consumer {c.name}: coef must be [D] or [C, D], got {coef.shape}")

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1] != coef.shape[-1]:
            raise ConsumerError(
                f"consumer {c.name} takes dimension {coef.shape[-1]}, got {x.shape[1]}"
            )
        s = x @ coef.T
        if intercept is not None:
            s = s + (intercept.reshape(()) if coef.ndim == 1 else intercept)
        return s

    return predict


#: Consumer kinds.
KINDS: dict[str, _Kind] = {
    "mlp": _Kind(_check_model_draft, _mlp_scorer),
    "torch": _Kind(_check_model_draft, _module_scorer),
    "linear": _Kind(_check_model_draft, _linear_scorer),
    "retrieval": _Kind(_check_retrieval_draft, None),
}


# ----------------------------------------------------------------------------- evaluation


@dataclass
class LoadedConsumer:
    """A consumer with its files read (and checked against their sha256).

    Attributes:
        spec: The description (or a draft's, with a provisional baseline).
        tensors: Its weights.
        tables: Its probe tables.
    """

    spec: Consumer
    tensors: dict[str, torch.Tensor]
    tables: dict[str, pa.Table]

    @staticmethod
    def from_draft(draft: ConsumerDraft, space: str = "") -> LoadedConsumer:
        """A draft as a consumer that can be evaluated before it is registered."""
        spec = Consumer(
            name=draft.name,
            kind=draft.kind,
            version=draft.version,
            input=draft.input,
            metric=draft.metric,
            threshold=draft.threshold,
            baseline=float("nan") if draft.baseline is None else draft.baseline,
            space=space,
            config=dict(draft.config),
            source=draft.source,
            num_probes=draft.probe_count(),
            rule=draft.rule,
        )
        return LoadedConsumer(spec, dict(draft.tensors), dict(draft.tables))


def _strings(table: pa.Table, column: str) -> list[str]:
    return [str(v) for v in table.column(column).to_pylist()]


def evaluate(consumer: LoadedConsumer, view: View) -> tuple[float, dict[str, float]]:
    """The consumer's metric on its probe set, with ver-j vectors from ``view``.

    Returns:
        ``(value, details)``; details holds secondary figures (retrieval: both recall and
        neighbour overlap when the probe set allows).
    """
    rows, details = score_rows(consumer, view)
    return rows.value(), details


def score_rows(consumer: LoadedConsumer, view: View) -> tuple[RowScores, dict[str, float]]:
    """The consumer's per-row scores on its probe set (retrieval: per-query metric).

    Returns:
        ``(rows, details)``; ``rows.value()`` is the consumer's metric.
    """
    c = consumer.spec
    if c.kind == "retrieval":
        return _retrieval_rows(consumer, view)
    probes = consumer.tables["probes"]
    if c.input == "edge":
        x = np.concatenate(
            [
                np.asarray(view("user", _strings(probes, "user_id"), c.version), np.float32),
                np.asarray(view("item", _strings(probes, "item_id"), c.version), np.float32),
            ],
            axis=1,
        )
    else:
        x = np.asarray(view(c.input, _strings(probes, "id"), c.version), np.float32)
    scorer = KINDS[c.kind].scorer
    assert scorer is not None
    predict = scorer(c, consumer.tensors)
    try:
        scores = np.asarray(predict(x), dtype=np.float64)
    except RuntimeError as err:  # a shape mismatch inside torch
        raise ConsumerError(f"consumer {c.name} cannot score ver-{c.version} vectors: {err}") from err
    labels = probes.column("label").to_numpy()
    name = parse_metric(c.metric)[0]
    _check_scores(name, scores)
    return RowScores(name, scores, labels), {}


def _retrieval_rows(consumer: LoadedConsumer, view: View) -> tuple[RowScores, dict[str, float]]:
    c = consumer.spec
    name, k = parse_metric(c.metric)
    assert k is not None
    queries, targets = consumer.tables["queries"], consumer.tables["targets"]
    target_ids = _strings(targets, "id")
    q = np.asarray(view(c.input, _strings(queries, "query"), c.version), np.float64)
    t = np.asarray(view(c.config.get("target_kind", "item"), target_ids, c.version), np.float64)
    top = top_k(q, t, k, _lists(queries, "exclude"), target_ids)
    per_query: dict[str, np.ndarray] = {}
    neighbours = _lists(queries, "neighbours")
    if neighbours is not None:
        per_query["overlap"] = np.array(
            [len(set(a) & set(b)) / k for a, b in zip(top, neighbours, strict=True)], dtype=np.float64
        )
    relevant = _lists(queries, "relevant")
    if relevant is not None:
        # A query without relevant targets has no recall: NaN, left out of the mean.
        per_query["recall"] = np.array(
            [len(set(a) & set(r)) / len(r) if r else np.nan for a, r in zip(top, relevant, strict=True)],
            dtype=np.float64,
        )
    if name not in per_query:
        raise ConsumerError(
            f"consumer {c.name}: {name}@{k} needs {'recorded neighbours' if name == 'overlap' else 'relevant targets'} per query"
        )
    details = {f"{m}@{k}": RowScores(m, v).value() for m, v in per_query.items() if m != name}
    return RowScores(name, per_query[name]), details


def _score_array(rows: RowScores) -> pa.Array:
    s = np.asarray(rows.scores, dtype=np.float64)
    return pa.array(s) if s.ndim == 1 else pa.array(list(s), pa.list_(pa.float64()))


def baseline_rows(consumer: LoadedConsumer) -> RowScores | None:
    """The baseline's per-row scores recorded at registration (None for older consumers)."""
    c = consumer.spec
    table = consumer.tables.get(probe_role(c.kind))
    if table is None or BASELINE_COLUMN not in table.column_names:
        return None
    col = table.column(BASELINE_COLUMN)
    if pa.types.is_list(col.type):
        scores = np.array(col.to_pylist(), dtype=np.float64)
    else:
        scores = col.to_numpy(zero_copy_only=False).astype(np.float64)
    labels = None if c.kind == "retrieval" else table.column("label").to_numpy()
    return RowScores(parse_metric(c.metric)[0], scores, labels)


def measure_baseline(draft: ConsumerDraft, view: View) -> float:
    """Measure a draft's baseline on ``view`` and record its per-row scores in its probe table.

    Sets ``draft.baseline`` and adds (or replaces) the :data:`BASELINE_COLUMN` column, which
    makes the gate's interval paired.

    Returns:
        The baseline metric.
    """
    rows, _ = score_rows(LoadedConsumer.from_draft(draft), view)
    role = probe_role(draft.kind)
    table = draft.tables[role]
    if BASELINE_COLUMN in table.column_names:
        table = table.drop_columns([BASELINE_COLUMN])
    draft.tables[role] = table.append_column(BASELINE_COLUMN, _score_array(rows))
    draft.baseline = rows.value()
    return draft.baseline


def _lists(table: pa.Table, column: str) -> list[list[str]] | None:
    if column not in table.column_names:
        return None
    return [[str(v) for v in (row or [])] for row in table.column(column).to_pylist()]


def top_k(
    queries: np.ndarray,
    targets: np.ndarray,
    k: int,
    exclude: list[list[str]] | None,
    target_ids: list[str],
    chunk: int = 1024,
) -> list[list[str]]:
    """The ``k`` targets of largest dot product for every query, skipping its ``exclude`` ids.

    Ties are broken by target order (stable), so that the same vectors give the same lists.

    Shapes:
        queries ``[Q, D]``, targets ``[T, D]``.
    """
    pos = {t: i for i, t in enumerate(target_ids)}
    k = min(k, len(target_ids))
    out: list[list[str]] = []
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ targets.T
        if exclude is not None:
            for r, ex in enumerate(exclude[start : start + chunk]):
                cols = [pos[e] for e in ex if e in pos]
                scores[r, cols] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out.extend([[target_ids[i] for i in row] for row in order])
    return out


# ----------------------------------------------------------------------------- the registry


class ConsumerRegistry:
    """The consumers of one store.

    Args:
        root: The store directory.

    Example:
        >>> reg = ConsumerRegistry("store")
        >>> [c.name for c in reg.list()]
        ['task.user_activity', ...]
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _read(self) -> dict[str, Consumer]:
        path = self.root / REGISTRY
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            d = json.loads(raw)
            if d.get("format_version", 0) > _FORMAT:
                raise StoreError(f"{path}: written by a newer bcemb; upgrade to read it")
            return {n: Consumer.from_dict(c) for n, c in d["consumers"].items()}
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
            raise IntegrityError(path, f"corrupt consumer registry: {err!r}") from err

    def _write(self, consumers: Mapping[str, Consumer]) -> None:
        body = {
            "format_version": _FORMAT,
            "consumers": {n: c.to_dict() for n, c in sorted(consumers.items())},
        }
        sio.atomic_write_bytes(self.root / REGISTRY, (json.dumps(body, indent=1) + "\n").encode())

    def list(self, version: int | None = None) -> list[Consumer]:
        """Registered consumers (of one version when given), by name."""
        return [c for c in self._read().values() if version is None or c.version == version]

    def get(self, name: str) -> Consumer:
        """One consumer's description."""
        consumers = self._read()
        if name not in consumers:
            known = ", ".join(sorted(consumers)) or "none"
            raise ConsumerError(f"no consumer named {name!r} in {self.root}; registered: {known}")
        return consumers[name]

    def load(self, name_or_spec: str | Consumer) -> LoadedConsumer:
        """A consumer with its files, each checked against its recorded sha256."""
        spec = self.get(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
        tensors: dict[str, torch.Tensor] = {}
        tables: dict[str, pa.Table] = {}
        for role, f in spec.files.items():
            path = sio.verify_file(self.root, f["path"], f["sha256"])
            if role == "weights":
                try:
                    tensors, _ = read_tensors(path)
                except ValueError as err:
                    raise IntegrityError(path, str(err)) from err
            else:
                tables[role] = sio.read_table(path)
        return LoadedConsumer(spec, tensors, tables)

    def add(
        self,
        draft: ConsumerDraft,
        *,
        space: str,
        baseline: float,
        replace_existing: bool = False,
    ) -> Consumer:
        """Write a consumer's files and register it (atomically, under the store's lock).

        Args:
            draft: The consumer.
            space: Fingerprint of the space its baseline was measured in.
            baseline: Its metric on its probe set in that space.
            replace_existing: Replace a consumer of the same name instead of failing.
        """
        from bcemb.store.publish import write_lock

        draft.validate()
        if not np.isfinite(baseline):
            raise ConsumerError(f"consumer {draft.name}: the baseline {draft.metric} is {baseline}")
        with write_lock(self.root):
            consumers = self._read()
            old = consumers.get(draft.name)
            if old is not None and not replace_existing:
                raise ConsumerError(f"a consumer named {draft.name!r} is already registered")
            rel = f"{_DIR}/{draft.name}.{uuid.uuid4().hex[:8]}"
            staging = self.root / _DIR / f".staging-{uuid.uuid4().hex[:12]}"
            staging.mkdir(parents=True)
            try:
                files: dict[str, dict[str, Any]] = {}
                if draft.tensors:
                    state = {k: v.detach().contiguous().cpu() for k, v in draft.tensors.items()}
                    sio.write_bytes(staging / "weights.safetensors", st_save(state))
                    files["weights"] = {"path": f"{rel}/weights.safetensors"}
                for role, table in sorted(draft.tables.items()):
                    pq.write_table(table, staging / f"{role}.parquet")
                    sio.fsync_file(staging / f"{role}.parquet")
                    files[role] = {"path": f"{rel}/{role}.parquet"}
                for f in files.values():
                    local = staging / Path(f["path"]).name
                    f["sha256"], f["bytes"] = sio.sha256_file(local), local.stat().st_size
                (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
                staging.rename(self.root / rel)
                sio.fsync_dir(self.root / _DIR)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            consumer = Consumer(
                name=draft.name,
                kind=draft.kind,
                version=draft.version,
                input=draft.input,
                metric=draft.metric,
                threshold=float(draft.threshold),
                baseline=float(baseline),
                space=space,
                config=dict(draft.config),
                files=files,
                created=utc_now(),
                source=draft.source,
                num_probes=draft.probe_count(),
                rule=draft.rule,
            )
            consumers[draft.name] = consumer
            self._write(consumers)  # the commit point
            if old is not None:
                self._remove_files(old)
        logger.info("registered consumer %s (version %d, %s %.4f)", draft.name, draft.version, draft.metric, baseline)
        return consumer

    def set_threshold(self, name: str, threshold: float) -> Consumer:
        """Change one consumer's threshold."""
        if not 0.0 <= threshold < 1.0:
            raise ConsumerError(f"threshold must be within [0, 1), got {threshold}")
        return self._update(name, threshold=float(threshold))

    def set_rule(self, name: str, rule: str | None) -> Consumer:
        """Change one consumer's decision rule (None: the gate's default)."""
        check_rule(rule)
        return self._update(name, rule=rule)

    def _update(self, name: str, **changes: Any) -> Consumer:
        from bcemb.store.publish import write_lock

        with write_lock(self.root):
            consumers = self._read()
            if name not in consumers:
                raise ConsumerError(f"no consumer named {name!r} in {self.root}")
            consumers[name] = replace(consumers[name], **changes)
            self._write(consumers)
        return consumers[name]

    def remove(self, name: str) -> Consumer:
        """Unregister a consumer and delete its files."""
        from bcemb.store.publish import write_lock

        with write_lock(self.root):
            consumers = self._read()
            if name not in consumers:
                known = ", ".join(sorted(consumers)) or "none"
                raise ConsumerError(f"no consumer named {name!r} in {self.root}; registered: {known}")
            gone = consumers.pop(name)
            self._write(consumers)
            self._remove_files(gone)
        return gone

    def _remove_files(self, consumer: Consumer) -> None:
        dirs = {Path(f["path"]).parent for f in consumer.files.values()}
        for d in dirs:
            shutil.rmtree(self.root / d, ignore_errors=True)
