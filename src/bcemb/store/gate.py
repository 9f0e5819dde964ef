"""The release gate: refuse a new version that would break a registered consumer.

Before anything is written, every registered consumer's metric is computed on the
*candidate's* backward-compatible view of its version — what the store would serve to it
after the publish, ``B_{j+1} o ... o B_K (z_K)`` with the candidate run's latest embeddings and
chain — and compared with its baseline: the relative drop ``(baseline - candidate) / baseline``
and its paired bootstrap 95 % interval over the probe rows (:mod:`bcemb.store.bootstrap`).
Under the default ``interval`` rule the gate refuses when a drop is confidently over the
consumer's threshold (default 2 %): the interval's lower end exceeds it. The ``point`` rule
refuses when the measured drop alone exceeds it.

The interval is paired when the baseline's per-row scores are known: recorded at
registration, or recomputed for older consumers when a view of the space they were
registered against is at hand (the candidate run's own version ``j``, or the store as it
is). Otherwise only the candidate is resampled, against the fixed baseline.

Publishing a run whose version 0 is new to the store (an empty store) also trains the five
task consumers and a retrieval consumer on the run's ver-0 vectors (:func:`auto_consumers`);
they are gated like registered ones and registered once the publish has committed.

Example:
    >>> report = gate_run("runs/non-bc", "store")
    >>> report.passed, [r.name for r in report.refused]
    (False, ['task.user_activity', ...])
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from bcemb.models.io import load_transform, read_tensors
from bcemb.store import io as sio
from bcemb.store.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, RowScores, drop_interval, relative_drop
from bcemb.store.consumers import (
    DEFAULT_THRESHOLD,
    RULES,
    Consumer,
    ConsumerDraft,
    ConsumerError,
    ConsumerRegistry,
    LoadedConsumer,
    baseline_rows,
    check_rule,
    measure_baseline,
    score_rows,
    top_k,
)
from bcemb.store.errors import PublishError, StoreError, UnknownIdsError, UnknownVersionError
from bcemb.store.fingerprint import run_space
from bcemb.store.manifest import Manifest, load_manifest
from bcemb.store.publish import finished_versions
from bcemb.transforms import TransformChain

logger = logging.getLogger(__name__)

__all__ = [
    "DECISIONS",
    "DEFAULT_RULE",
    "EXIT_REFUSED",
    "ConsumerResult",
    "GateRefused",
    "GateReport",
    "RunView",
    "StoreView",
    "auto_consumers",
    "format_report",
    "gate_run",
    "gate_store",
    "publish_gated",
]

#: Exit status of ``bcemb store gate`` / ``publish --gate`` when the gate refuses.
EXIT_REFUSED = 3
#: The rule of consumers that name none, when the gate is not told one.
DEFAULT_RULE = "interval"


def _interval_refuses(drop: float, low: float, threshold: float) -> bool:
    # Without an interval (no resamples, a degenerate probe set) the measured drop decides.
    return (low if math.isfinite(low) else drop) > threshold


#: ``rule -> (drop, interval's lower end, threshold) -> refuse?`` (keys: ``consumers.RULES``).
DECISIONS: dict[str, Callable[[float, float, float], bool]] = {
    "interval": _interval_refuses,
    "point": lambda drop, low, threshold: drop > threshold,
}
assert tuple(DECISIONS) == RULES


# ----------------------------------------------------------------------------- views


class RunView:
    """Ver-j compatible vectors a store would serve after publishing a training run.

    ``z_K`` and ``B_1 .. B_K`` come from the run folder's latest finished version ``K``
    (``latest`` to pick another), node ids from its graph.

    Args:
        run_dir: The training-run folder.
        latest: The version to view from (default the latest finished one).
    """

    def __init__(self, run_dir: str | Path, latest: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        finished = finished_versions(self.run_dir)
        if not finished:
            raise PublishError(f"{self.run_dir} has no finished version (no version_0/done.json)")
        self.latest = finished[-1] if latest is None else latest
        if self.latest not in finished:
            raise PublishError(f"version {self.latest} of {self.run_dir} is not finished")
        self._graph: Any = None
        self._emb = dict(zip(("user", "item"), self.embeddings(self.latest), strict=True))
        self._index = {
            k: pd.Index(np.asarray(v, dtype=object), dtype=object)
            for k, v in self.ids(self.latest).items()
        }
        try:
            self.chain = TransformChain(
                [
                    load_transform(self._vdir(k) / "transform.safetensors")
                    for k in range(1, self.latest + 1)
                ]
            )
        except (FileNotFoundError, ValueError) as err:
            raise PublishError(f"cannot read the run's transforms: {err}") from err

    @property
    def graph(self) -> Any:
        """The run's graph (None for runs of models without a graph)."""
        if self._graph is None and (self.run_dir / "graph").is_dir():
            from bcemb.data.graph import DataError
            from bcemb.data.io import load_graph

            try:
                self._graph = load_graph(self.run_dir / "graph")
            except DataError as err:
                raise PublishError(f"cannot read the run's graph: {err}") from err
        return self._graph

    def ids(self, k: int) -> dict[str, list[str]]:
        """Original ids of version ``k``'s user and item rows."""
        from bcemb.run_folder import read_ids

        users, items = (len(e) for e in self.embeddings(k)) if k != self.latest else (
            len(self._emb["user"]),
            len(self._emb["item"]),
        )
        stored = read_ids(self.run_dir, k)
        if stored is not None:
            return {"user": stored.get("user", [])[:users], "item": stored.get("item", [])[:items]}
        if self.graph is None:
            raise PublishError(f"{self.run_dir}: version {k} has neither ids.parquet nor a graph")
        return {
            "user": [str(v) for v in self.graph.user_ids[:users]],
            "item": [str(v) for v in self.graph.item_ids[:items]],
        }

    def _vdir(self, k: int) -> Path:
        return self.run_dir / f"version_{k}"

    def embeddings(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The real ``z_k`` of the run: ``(user [U_k, D_k], item [I_k, D_k])``."""
        try:
            tensors, _ = read_tensors(self._vdir(k) / "embeddings.safetensors")
        except (FileNotFoundError, ValueError) as err:
            raise PublishError(str(err)) from err
        return tuple(tensors[n].detach().float().numpy() for n in ("user_emb", "item_emb"))  # type: ignore[return-value]

    def space(self, version: int) -> str:
        """The fingerprint the store would give ver-``version`` vectors."""
        return str(run_space(self.run_dir, version, self.latest))

    def __call__(self, kind: str, ids: list[str], version: int) -> np.ndarray:
        if not 0 <= version <= self.latest:
            raise UnknownVersionError(version, list(range(self.latest + 1)))
        rows = self._index[kind].get_indexer(ids) if ids else np.zeros(0, np.int64)
        if (rows < 0).any():
            missing = [i for i, r in zip(ids, rows, strict=True) if r < 0]
            raise UnknownIdsError(kind, missing, len(ids))
        z = self._emb[kind][rows]
        if version == self.latest:
            return z
        # The same composition as the store's (one product for linear links).
        return self.chain.apply(torch.from_numpy(np.ascontiguousarray(z)), version).numpy()


class StoreView:
    """Ver-j compatible vectors the store serves now."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.latest = store.latest

    def space(self, version: int) -> str:
        """The store's fingerprint of the ver-``version`` space."""
        return str(self.store.space(version))

    def __call__(self, kind: str, ids: list[str], version: int) -> np.ndarray:
        return np.asarray(self.store.get(ids, version=version, kind=kind))


# ----------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class ConsumerResult:
    """One consumer's verdict.

    Attributes:
        name: The consumer.
        kind: Its kind.
        version: ``j``.
        metric: Its metric.
        baseline: Its registered baseline.
        candidate: The metric on the candidate's view (NaN when it could not be computed).
        drop: ``(baseline - candidate) / baseline`` (negative: the candidate is better).
        threshold: The largest accepted drop.
        passed: The verdict of ``rule``.
        pending: A consumer trained for this publish, registered only if it passes.
        note: Why it could not be evaluated, if so.
        details: Secondary figures (retrieval: neighbour overlap).
        drop_low: Lower end of the drop's bootstrap interval (NaN: none).
        drop_high: Upper end.
        rule: The decision rule applied (``interval`` or ``point``).
        interval: How the interval was made: ``paired`` (baseline scores recorded at
            registration), ``paired-recomputed`` (recomputed from a view of the baseline's
            space), ``candidate-only`` (baseline fixed) or ``none``.
        resamples: Bootstrap resamples behind the interval.
    """

    name: str
    kind: str
    version: int
    metric: str
    baseline: float
    candidate: float
    drop: float
    threshold: float
    passed: bool
    pending: bool = False
    note: str = ""
    details: dict[str, float] = field(default_factory=dict)
    drop_low: float = float("nan")
    drop_high: float = float("nan")
    rule: str = DEFAULT_RULE
    interval: str = "none"
    resamples: int = 0

    @property
    def within_noise(self) -> bool:
        """Passed although the measured drop is over the threshold (the interval reaches below)."""
        return self.passed and self.drop > self.threshold


@dataclass(frozen=True)
class GateReport:
    """The gate's decision on a candidate.

    Attributes:
        candidate: The run folder (or ``store`` for the store's current state).
        store: The store directory.
        store_latest: The store's latest version (-1 for an empty store).
        candidate_latest: The version the candidate would publish.
        results: One verdict per consumer.
        notes: Anything else a publish would run into (not part of the decision).
        rule: The rule forced on every consumer (None: each consumer's own, else
            :data:`DEFAULT_RULE`).
        resamples: Bootstrap resamples of each interval.
        seed: Seed of the resampling.
        level: Coverage of the intervals.
    """

    candidate: str
    store: str
    store_latest: int
    candidate_latest: int
    results: tuple[ConsumerResult, ...]
    notes: tuple[str, ...] = ()
    rule: str | None = None
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    level: float = DEFAULT_LEVEL

    @property
    def passed(self) -> bool:
        """Every consumer within its threshold."""
        return all(r.passed for r in self.results)

    @property
    def refused(self) -> list[ConsumerResult]:
        """The consumers the candidate would break."""
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN written as null)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [clean(x) for x in v]
            return v

        return clean(
            {
                "decision": "pass" if self.passed else "refuse",
                "candidate": self.candidate,
                "store": self.store,
                "store_latest": self.store_latest,
                "candidate_latest": self.candidate_latest,
                "rule": self.rule,
                "bootstrap": {"resamples": self.resamples, "seed": self.seed, "level": self.level},
                "refused": [r.name for r in self.refused],
                "consumers": [asdict(r) for r in self.results],
                "notes": list(self.notes),
            }
        )

    def write(self, path: str | Path) -> None:
        """Write the JSON report (atomically)."""
        sio.atomic_write_bytes(Path(path), (json.dumps(self.to_dict(), indent=1) + "\n").encode())


class GateRefused(StoreError):
    """The gate refused a publish; ``report`` says which consumers it would break."""

    def __init__(self, report: GateReport) -> None:
        names = ", ".join(r.name for r in report.refused)
        super().__init__(f"the gate refused {report.candidate}: it would break {names}")
        self.report = report


def _fmt(v: float, pct: bool = False) -> str:
    if not math.isfinite(v):
        return "n/a"
    return f"{v:+.2%}" if pct else f"{v:.4f}"


def _interval_cell(r: ConsumerResult) -> str:
    if not (math.isfinite(r.drop_low) and math.isfinite(r.drop_high)):
        return "n/a"
    return f"[{_fmt(r.drop_low, True)}, {_fmt(r.drop_high, True)}]"


def _verdict(r: ConsumerResult) -> str:
    if not r.passed:
        return "REFUSED" + (f" ({r.note})" if r.note else "")
    return "ok (within noise)" if r.within_noise else "ok"


def format_report(report: GateReport) -> str:
    """The decision as a table: consumer, version, metric, baseline, candidate, drop, interval."""
    header = [
        "consumer", "version", "metric", "baseline", "candidate", "drop", "95%-interval",
        "threshold", "rule", "verdict",
    ]
    rows = [
        [
            r.name + (" (new)" if r.pending else ""),
            str(r.version),
            r.metric,
            _fmt(r.baseline),
            _fmt(r.candidate),
            _fmt(r.drop, pct=True),
            _interval_cell(r),
            f"{r.threshold:.1%}",
            r.rule,
            _verdict(r),
        ]
        for r in report.results
    ]
    cells = [header] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    if not report.results:
        lines.append("(no registered consumer)")
    else:
        lines.append(
            f"drop: relative, negative = better; {report.level:.0%}-interval: bootstrap over the "
            f"probe rows ({report.resamples} resamples, seed {report.seed}); rule interval refuses "
            "when the interval's lower end exceeds the threshold, point when the drop does"
        )
    for r in report.results:
        if r.interval not in ("paired", "none"):
            lines.append(f"note: {r.name}: interval {r.interval}" + (
                " (no baseline scores recorded and no view of its space at hand)"
                if r.interval == "candidate-only" else " (baseline scores recomputed from its space)"
            ))
    for n in report.notes:
        lines.append(f"note: {n}")
    if report.passed:
        lines.append(
            f"gate passed: version {report.candidate_latest} of {report.candidate} keeps all "
            f"{len(report.results)} consumer(s) within their thresholds"
        )
    else:
        names = ", ".join(r.name for r in report.refused)
        lines.append(
            f"gate refused: version {report.candidate_latest} of {report.candidate} would break "
            f"{len(report.refused)} of {len(report.results)} consumer(s): {names}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the gate


@dataclass(frozen=True)
class _Options:
    """How the gate decides: the forced rule (None: per consumer) and the bootstrap."""

    rule: str | None = None
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0

    def rule_of(self, spec: Consumer) -> str:
        return self.rule or spec.rule or DEFAULT_RULE


#: ``(version, space) -> a view serving that version in that space``, None when not at hand.
_ViewSource = Callable[[int, str], Any]


def _reproduces(rows: RowScores, baseline: float) -> bool:
    # Scores that do not give the registered baseline (a baseline given by hand, another
    # space) cannot stand in for it.
    value = rows.value()
    return math.isfinite(value) and abs(value - baseline) <= 1e-6 + 1e-4 * abs(baseline)


def _baseline_for(
    consumer: LoadedConsumer, sources: Sequence[_ViewSource]
) -> tuple[RowScores | float, str]:
    """The baseline's per-row scores and how they were had, else the baseline number."""
    spec = consumer.spec
    rows = baseline_rows(consumer)
    if rows is not None and _reproduces(rows, spec.baseline):
        return rows, "paired"
    for source in sources:
        view = source(spec.version, spec.space) if spec.space else None
        if view is None:
            continue
        rows, _ = score_rows(consumer, view)
        if _reproduces(rows, spec.baseline):
            return rows, "paired-recomputed"
    return spec.baseline, "candidate-only"


def _judge(
    consumer: LoadedConsumer,
    view: Any,
    *,
    pending: bool,
    options: _Options = _Options(),
    sources: Sequence[_ViewSource] = (),
) -> ConsumerResult:
    c = consumer.spec
    note = ""
    details: dict[str, float] = {}
    rows: RowScores | None = None
    try:
        if c.version > view.latest:
            raise ConsumerError(f"version {c.version} is newer than the candidate's {view.latest}")
        rows, details = score_rows(consumer, view)
        value = rows.value()
    except (ConsumerError, StoreError, KeyError, ValueError) as err:
        value, note = float("nan"), str(err)
    drop = float(relative_drop(c.baseline, value))
    low = high = float("nan")
    method = "none"
    if rows is not None and math.isfinite(value):
        baseline, method = _baseline_for(consumer, sources)
        # Seeded by the consumer's name too: reproducible, and independent of the others.
        seed = [options.seed, zlib.crc32(c.name.encode())]
        interval = drop_interval(rows, baseline, resamples=options.resamples, seed=seed)
        low, high = interval.low, interval.high
        method = method if interval.method != "none" else "none"
    rule = options.rule_of(c)
    passed = math.isfinite(value) and not DECISIONS[rule](drop, low, c.threshold)
    if not math.isfinite(value) and not note:
        note = f"{c.metric} is undefined on the candidate"
    return ConsumerResult(
        name=c.name,
        kind=c.kind,
        version=c.version,
        metric=c.metric,
        baseline=c.baseline,
        candidate=value,
        drop=drop,
        threshold=c.threshold,
        passed=bool(passed),
        pending=pending,
        note=note,
        details=details,
        drop_low=low,
        drop_high=high,
        rule=rule,
        interval=method,
        resamples=options.resamples if method != "none" else 0,
    )


def _matching(view: Any) -> _ViewSource:
    """A source answering ``view`` for the spaces it serves."""

    def source(version: int, space: str) -> Any:
        try:
            return view if version <= view.latest and view.space(version) == space else None
        except (StoreError, OSError, ValueError):
            return None

    return source


def _store_source(root: Path) -> _ViewSource:
    """The store as it is now (opened on first need: most consumers record their scores)."""
    opened: list[Any] = []

    def source(version: int, space: str) -> Any:
        if not opened:
            from bcemb.store.store import EmbeddingStore

            try:
                opened.append(StoreView(EmbeddingStore(root, verify=False)))
            except (StoreError, OSError, ValueError):
                opened.append(None)
        return None if opened[0] is None else _matching(opened[0])(version, space)

    return source


def _run_source(run: RunView) -> _ViewSource:
    """The candidate run viewed from each of its finished versions (``j`` seen from ``m >= j``)."""
    views: dict[int, RunView] = {run.latest: run}

    def source(version: int, space: str) -> Any:
        for m in finished_versions(run.run_dir):
            if m < version:
                continue
            try:
                if str(run_space(run.run_dir, version, m)) != space:
                    continue
                if m not in views:
                    views[m] = RunView(run.run_dir, latest=m)
            except (StoreError, OSError, ValueError):
                continue
            return views[m]
        return None

    return source


def _lineage_notes(run: RunView, manifest: Manifest | None) -> list[str]:
    """What a publish of the run would run into besides the consumers."""
    if manifest is None:
        return []
    notes = []
    if run.latest <= manifest.latest:
        notes.append(
            f"a publish would have nothing to add: the store's latest is version {manifest.latest}, "
            f"the run's {run.latest}"
        )
    for entry in manifest.versions[1 : run.latest + 1]:
        src = run.run_dir / f"version_{entry.version}" / "transform.safetensors"
        if not src.is_file() or sio.sha256_file(src) != manifest.files[entry.files["transform"]].sha256:
            notes.append(
                f"the run is not a continuation of the store: its B_{entry.version} differs from the "
                "stored one (a publish would be rejected)"
            )
            break
    return notes


def gate_run(
    run_dir: str | Path,
    store_dir: str | Path,
    *,
    pending: Sequence[ConsumerDraft] = (),
    pending_baselines: Sequence[float] | None = None,
    rule: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> GateReport:
    """Judge a training run's latest version against the store's registered consumers.

    Nothing is written.

    Args:
        run_dir: The candidate training run.
        store_dir: The store (may be empty or missing: then only ``pending`` consumers count).
        pending: Consumers trained for this publish, judged like registered ones.
        pending_baselines: Their baselines (default each draft's ``baseline``).
        rule: ``interval`` or ``point`` for every consumer (default: each consumer's own
            rule, else :data:`DEFAULT_RULE`).
        resamples: Bootstrap resamples of each drop's interval (0: none).
        seed: Seed of the resampling.

    Returns:
        The report; :attr:`GateReport.passed` is the decision.
    """
    check_rule(rule)
    options = _Options(rule, resamples, seed)
    root = Path(store_dir)
    view = RunView(run_dir)
    manifest = load_manifest(root) if root.is_dir() else None
    registry = ConsumerRegistry(root)
    sources = [_run_source(view), _store_source(root)]
    results = [
        _judge(registry.load(c), view, pending=False, options=options, sources=sources)
        for c in registry.list()
    ]
    baselines = list(pending_baselines) if pending_baselines is not None else [d.baseline for d in pending]
    for draft, base in zip(pending, baselines, strict=True):
        loaded = LoadedConsumer.from_draft(draft)
        loaded.spec = _with_baseline(loaded.spec, base)
        results.append(_judge(loaded, view, pending=True, options=options))
    return GateReport(
        candidate=str(run_dir),
        store=str(store_dir),
        store_latest=manifest.latest if manifest is not None else -1,
        candidate_latest=view.latest,
        results=tuple(results),
        notes=tuple(_lineage_notes(view, manifest)),
        rule=rule,
        resamples=resamples,
        seed=seed,
    )


def gate_store(
    store: Any, *, rule: str | None = None, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> GateReport:
    """Every registered consumer on what the store serves now (a health check)."""
    check_rule(rule)
    options = _Options(rule, resamples, seed)
    view = StoreView(store)
    registry = ConsumerRegistry(store.root)
    results = [
        _judge(registry.load(c), view, pending=False, options=options, sources=[_matching(view)])
        for c in registry.list()
    ]
    return GateReport(
        "store", str(store.root), store.latest, store.latest, tuple(results),
        rule=rule, resamples=resamples, seed=seed,
    )


def _with_baseline(spec: Any, baseline: float | None) -> Any:
    from dataclasses import replace

    return replace(spec, baseline=float("nan") if baseline is None else float(baseline))


# ----------------------------------------------------------------------------- auto consumers


def auto_consumers(
    run_dir: str | Path,
    *,
    seed: int = 0,
    hidden: Sequence[int] = (128, 256),
    dropout: Sequence[float] = (0.0, 0.25),
    epochs: int = 100,
    patience: int = 10,
    probe_share: float = 0.25,
    max_fit_rows: int = 8000,
    min_probes: int = 100,
    queries: int = 500,
    min_queries: int = 50,
    k: int = 50,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[tuple[ConsumerDraft, float]]:
    """Train the five task consumers and a retrieval consumer on a run's ver-0 vectors.

    Task consumers (:mod:`bcemb.data.consumer_tasks`, labels at ``t_0``): the nodes (edges) of
    each task are split at random into training (60 %), validation (15 %, early stopping and
    the choice of hidden size and dropout; at most ``max_fit_rows`` and a quarter of that) and a
    held-out probe set (``probe_share``, at least ``min_probes`` rows, else the task is
    skipped); the
    MLP and its training are those of ``bcemb benchmark`` (:func:`bcemb.evaluation.consumer.fit_consumer`),
    with one seed. The baseline is the ROC-AUC on the probe set with the real ``z_0``.

    The retrieval consumer: ``queries`` users present at ``t_0`` with edges in
    ``(t_0, t_1]`` (at least ``min_queries``); targets every item of ``z_0``; their top-``k`` items in ver-0 space are
    recorded (neighbour overlap) and Recall@``k`` of the held-out items, the training items
    excluded, is the gated metric.

    Returns:
        ``(draft, baseline)`` pairs; tasks the graph is too small for are skipped (logged).
    """
    from bcemb.data.consumer_tasks import TASKS, ConsumerTasks
    from bcemb.data.graph import DataError
    from bcemb.data.splits import TimeSlices
    from bcemb.evaluation.consumer import fit_consumer, task_inputs
    from bcemb.experiments.config import ConsumerConfig
    from bcemb.utils import read_json

    run = Path(run_dir)
    view = RunView(run, latest=0)
    if view.graph is None:
        logger.warning("no consumers trained for %s: the run has no graph (labels come from it)", run)
        return []
    config = read_json(run / "config.json")
    try:
        slices = TimeSlices(view.graph, config["times"])
        tasks = ConsumerTasks(slices)
    except (KeyError, TypeError, DataError) as err:
        logger.warning("no task consumers for %s: %s", run, err)
        tasks = None
    user0, item0 = view.embeddings(0)
    uids = np.asarray(view.graph.user_ids).astype(str)
    iids = np.asarray(view.graph.item_ids).astype(str)
    train_cfg = ConsumerConfig(
        hidden=tuple(hidden), dropout=tuple(dropout), seeds=1, epochs=epochs, patience=patience
    )
    out: list[tuple[ConsumerDraft, float]] = []
    zu, zi = torch.from_numpy(user0), torch.from_numpy(item0)
    for t_i, task in enumerate(TASKS if tasks is not None else ()):
        data = tasks.train(task)  # type: ignore[union-attr]
        n = len(data)
        rng = np.random.default_rng([seed, 7, t_i])
        perm = rng.permutation(n)
        n_probe, n_val = int(round(probe_share * n)), int(round(0.15 * n))
        probe, val, fit = perm[:n_probe], perm[n_probe : n_probe + n_val], perm[n_probe + n_val :]
        # The edge task has ~50k rows on MovieLens-100K: a sample trains as good a consumer
        # in a fraction of the time (publishing should take seconds, not minutes).
        fit, val = fit[:max_fit_rows], val[: max(max_fit_rows // 4, 4)]
        labels = np.asarray(data.label)
        if len(probe) < min_probes or any(np.unique(labels[p]).size < 2 for p in (probe, val, fit)):
            # A gate on a handful of probes would judge noise.
            logger.warning(
                "no consumer for task %s: %d probes (at least %d with both labels needed)",
                task, len(probe), min_probes,
            )
            continue
        x = task_inputs(data, zu, zi)
        y = torch.as_tensor(labels)
        best = None
        for h in train_cfg.hidden:
            for d in train_cfg.dropout:
                model, auc = fit_consumer(
                    x[fit], y[fit], x[val], y[val], hidden=h, dropout=d, config=train_cfg, seed=seed
                )
                if best is None or auc > best[0]:
                    best = (auc, h, d, model)
        assert best is not None
        _, h, d, model = best
        if data.kind == "edge":
            idx = np.asarray(data.index)[probe]
            table = pa.table(
                {"user_id": uids[idx[:, 0]], "item_id": iids[idx[:, 1]], "label": labels[probe]}
            )
        else:
            ids = (uids if data.kind == "user" else iids)[np.asarray(data.index)[probe]]
            table = pa.table({"id": ids, "label": labels[probe]})
        draft = ConsumerDraft(
            name=f"task.{task}",
            kind="mlp",
            version=0,
            input=data.kind,
            metric="roc_auc",
            config={"in_dim": int(x.shape[1]), "hidden": int(h), "dropout": float(d), "num_hidden": 1, "task": task},
            tensors=dict(model.state_dict()),
            tables={"probes": table},
            threshold=threshold,
            source=f"auto: task {task} trained on version 0 of {run}",
        )
        baseline = measure_baseline(draft, view)  # records the per-row scores too
        out.append((draft, baseline))
        logger.info("consumer task.%s: hidden %d, dropout %.2f, probe ROC-AUC %.4f", task, h, d, baseline)
    retrieval = _retrieval_draft(
        run, view, config, seed=seed, queries=queries, min_queries=min_queries, k=k, threshold=threshold
    )
    if retrieval is not None:
        out.append(retrieval)
    return out


def _retrieval_draft(
    run: Path,
    view: RunView,
    config: dict[str, Any],
    *,
    seed: int,
    queries: int,
    min_queries: int,
    k: int,
    threshold: float,
) -> tuple[ConsumerDraft, float] | None:
    from bcemb.data.graph import DataError
    from bcemb.data.splits import TimeSlices

    graph = view.graph
    user0, item0 = view.embeddings(0)
    try:
        slices = TimeSlices(graph, config["times"])
        e0 = slices.num_edges(0)
        window = slices.window(0)
    except (KeyError, TypeError, DataError) as err:
        logger.warning("no retrieval consumer for %s: %s", run, err)
        return None
    n_users, n_items = len(user0), len(item0)
    users = graph.user[window]
    items = graph.item[window]
    keep = (users < n_users) & (users < slices.num_users(0)) & (items < n_items)
    relevant: dict[int, set[int]] = {}
    for u, i in zip(users[keep], items[keep], strict=True):
        relevant.setdefault(int(u), set()).add(int(i))
    if not relevant:
        logger.warning("no retrieval consumer for %s: no user has edges after t_0", run)
        return None
    trained: dict[int, set[int]] = {}
    for u, i in zip(graph.user[:e0], graph.item[:e0], strict=True):
        trained.setdefault(int(u), set()).add(int(i))
    if len(relevant) < min_queries:
        logger.warning(
            "no retrieval consumer for %s: %d users with edges after t_0 (at least %d needed)",
            run, len(relevant), min_queries,
        )
        return None
    rng = np.random.default_rng([seed, 11])
    candidates = np.array(sorted(relevant))
    chosen = np.sort(rng.choice(candidates, size=min(queries, len(candidates)), replace=False))
    uids = np.asarray(graph.user_ids).astype(str)
    iids = np.asarray(graph.item_ids).astype(str)[:n_items]
    target_ids = list(iids)
    rel = [sorted(iids[list(relevant[u] - trained.get(u, set()))]) for u in chosen]
    exc = [sorted(iids[sorted(trained.get(u, set()))]) for u in chosen]
    top = top_k(user0[chosen].astype(np.float64), item0.astype(np.float64), k, exc, target_ids)
    table = pa.table(
        {
            "query": uids[chosen],
            "neighbours": pa.array(top, pa.list_(pa.string())),
            "relevant": pa.array(rel, pa.list_(pa.string())),
            "exclude": pa.array(exc, pa.list_(pa.string())),
        }
    )
    draft = ConsumerDraft(
        name="retrieval.items",
        kind="retrieval",
        version=0,
        input="user",
        metric=f"recall@{k}",
        config={"k": k, "target_kind": "item"},
        tables={"queries": table, "targets": pa.table({"id": target_ids})},
        threshold=threshold,
        source=f"auto: held-out items of {len(chosen)} users after t_0, version 0 of {run}",
    )
    baseline = measure_baseline(draft, view)
    logger.info("consumer retrieval.items: recall@%d %.4f", k, baseline)
    return draft, baseline


# ----------------------------------------------------------------------------- publish


def publish_gated(
    run_dir: str | Path,
    store_dir: str | Path,
    *,
    gate: bool = True,
    consumers: bool = True,
    report_path: str | Path | None = None,
    consumer_options: dict[str, Any] | None = None,
    rule: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = 0,
    **publish_options: Any,
) -> tuple[Manifest, GateReport | None, list[str]]:
    """Publish a run after the gate (and register new consumers when version 0 is new).

    Args:
        run_dir: The training run.
        store_dir: The store.
        gate: Judge the run against every registered (and newly trained) consumer first.
        consumers: Train and register the task and retrieval consumers when version 0 is
            new to the store.
        report_path: Where to write the gate's JSON report.
        consumer_options: Keyword arguments of :func:`auto_consumers`.
        rule: The gate's decision rule (see :func:`gate_run`).
        resamples: Bootstrap resamples of the gate's intervals.
        bootstrap_seed: Seed of the resampling.
        **publish_options: Passed on to :func:`bcemb.store.publish`.

    Returns:
        The new manifest, the gate's report (None without the gate) and the names of the
        consumers registered.

    Raises:
        GateRefused: The gate refused; nothing was written (except the report).
    """
    from bcemb.store.publish import publish

    root = Path(store_dir)
    current = load_manifest(root) if root.is_dir() else None
    drafts: list[tuple[ConsumerDraft, float]] = []
    if consumers and current is None:
        drafts = auto_consumers(run_dir, **(consumer_options or {}))
    report = None
    if gate:
        report = gate_run(
            run_dir,
            root,
            pending=[d for d, _ in drafts],
            pending_baselines=[b for _, b in drafts],
            rule=rule,
            resamples=resamples,
            seed=bootstrap_seed,
        )
        if report_path is not None:
            report.write(report_path)
        if not report.passed:
            raise GateRefused(report)
    publish_options.setdefault("same_graph", True)
    manifest = publish(run_dir, root, **publish_options)
    registered = []
    if drafts:
        registry = ConsumerRegistry(root)
        space = str(run_space(run_dir, 0, 0))  # the real z_0 the baselines were measured on
        for draft, baseline in drafts:
            registry.add(draft, space=space, baseline=baseline, replace_existing=True)
            registered.append(draft.name)
    return manifest, report, registered
