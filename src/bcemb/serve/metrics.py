"""Prometheus metrics of the HTTP service (``GET /metrics``, prometheus-client).

Families (every name starts with ``bcemb_``):

- ``bcemb_requests_total{route, version, status}``: requests answered;
- ``bcemb_request_duration_seconds{route, version, status}``: latency histogram;
- ``bcemb_vectors_served_total{version}``: vectors returned;
- ``bcemb_store_latest_version``: the version whose model the store serves from;
- ``bcemb_store_versions``: versions served (``0..latest``);
- ``bcemb_chain_probe_error{version}``: mean L2 distance, on version j's probe sample, between
  the chain's ver-j view and the real ``z_j`` as it was published (chain error plus graph drift);
- ``bcemb_chain_probe_relative_error{version}``: the same divided by the probes' mean norm;
- ``bcemb_store_reloads_total``: store snapshots opened after a publish.

Each app has its own registry, so several apps (tests, several stores) never share counts.
``version`` is the requested version (``latest`` when the request named none, ``none`` when
the request failed before one was known).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE", "ServiceMetrics", "probe_errors"]

#: Latency buckets in seconds: a single id takes about a millisecond, 10,000 ids about a second.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

try:  # the content type Prometheus expects; the module itself is imported lazily
    from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
except ImportError:  # pragma: no cover - the serve extra is not installed
    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def probe_errors(store: Any) -> dict[int, tuple[float, float]]:
    """``version -> (mean L2, relative)`` of the chain on each version's probe sample.

    The alignment part of :meth:`bcemb.store.EmbeddingStore.check` without the checksums of
    every file (which would read the whole store): cheap enough to run at each reload.
    """
    from bcemb.store import io as sio
    from bcemb.store.errors import UnknownIdsError

    out: dict[int, tuple[float, float]] = {}
    for entry in store.manifest.versions:
        rel = entry.files.get("probes")
        if rel is None:
            continue
        try:
            table = sio.read_table(store.root / rel)
            truth = sio.table_vectors(table, store.root / rel).astype(np.float64)
        except Exception as err:  # a broken probe file must not take the service down
            logger.warning("cannot read the probes of version %d: %s", entry.version, err)
            continue
        kinds = np.asarray(table.column("kind").to_pylist(), dtype=object)
        ids = np.asarray(table.column("id").to_pylist(), dtype=object)
        dist, norm = [], []
        for kind in ("user", "item"):
            mask = kinds == kind
            if not mask.any():
                continue
            keys = [str(i) for i in ids[mask]]
            try:
                store.get(keys, version=entry.version, kind=kind)
                known = np.ones(len(keys), dtype=bool)
            except UnknownIdsError as err:  # probes of nodes gone from the latest (should not be)
                gone = set(err.missing)
                known = np.array([k not in gone for k in keys], dtype=bool)
            if not known.any():
                continue
            z = np.asarray(
                store.get([k for k, ok in zip(keys, known, strict=True) if ok], version=entry.version, kind=kind),
                dtype=np.float64,
            )
            t = truth[mask][known]
            dist.append(np.linalg.norm(z - t, axis=1))
            norm.append(np.linalg.norm(t, axis=1))
        if dist:
            d, n = np.concatenate(dist), np.concatenate(norm)
            out[entry.version] = (float(d.mean()), float(d.mean() / n.mean()) if n.mean() > 0 else float("nan"))
    return out


class ServiceMetrics:
    """The service's metrics in a registry of their own.

    Args:
        namespace: Prefix of every metric name.
    """

    def __init__(self, namespace: str = "bcemb") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("route", "version", "status")
        self.requests = Counter(
            "requests", "Requests answered.", labels, namespace=namespace, registry=self.registry
        )
        self.latency = Histogram(
            "request_duration_seconds",
            "Time to answer a request.",
            labels,
            namespace=namespace,
            registry=self.registry,
            buckets=_BUCKETS,
        )
        self.vectors = Counter(
            "vectors_served", "Vectors returned.", ("version",), namespace=namespace, registry=self.registry
        )
        self.latest = Gauge(
            "store_latest_version", "The store's latest version.", namespace=namespace, registry=self.registry
        )
        self.versions = Gauge(
            "store_versions", "Versions the store serves.", namespace=namespace, registry=self.registry
        )
        self.probe_error = Gauge(
            "chain_probe_error",
            "Mean L2 distance between the chain's ver-j view and the published z_j on version j's probes.",
            ("version",),
            namespace=namespace,
            registry=self.registry,
        )
        self.probe_relative = Gauge(
            "chain_probe_relative_error",
            "chain_probe_error divided by the probes' mean norm.",
            ("version",),
            namespace=namespace,
            registry=self.registry,
        )
        self.reloads = Counter(
            "store_reloads", "Store snapshots opened after a publish.", namespace=namespace, registry=self.registry
        )
        self._store_key: object = None
        self._lock = threading.Lock()
        self._children: dict[tuple[str, object, int], tuple[Any, Any, Any]] = {}

    def observe(self, route: str, version: object, status: int, seconds: float, vectors: int = 0) -> None:
        """Record one answered request."""
        key = (route, version, status)
        children = self._children.get(key)
        if children is None:  # labels() costs microseconds: look each label set up once
            v = "latest" if version is None else str(version)
            labels = (route, v, str(status))
            children = self._children[key] = (
                self.requests.labels(*labels),
                self.latency.labels(*labels),
                self.vectors.labels(v),
            )
        requests, latency, served = children
        requests.inc()
        latency.observe(seconds)
        if vectors:
            served.inc(vectors)

    def track_store(self, store: Any) -> None:
        """Refresh the store gauges when the snapshot changed (probe errors are computed once per snapshot)."""
        key = (str(store.root), store.manifest.name)
        if key == self._store_key:
            return
        with self._lock:
            if key == self._store_key:
                return
            if self._store_key is not None:
                self.reloads.inc()
            self.latest.set(store.latest)
            self.versions.set(store.latest + 1)
            self.probe_error.clear()
            self.probe_relative.clear()
            for version, (mean, rel) in probe_errors(store).items():
                self.probe_error.labels(str(version)).set(mean)
                self.probe_relative.labels(str(version)).set(rel)
            self._store_key = key

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
