"""Compatibility for vectors of models we did not train: fit ``B`` post hoc, report, publish."""

from __future__ import annotations

from bcemb.compat.adapt import FAMILIES, AdaptReport, adapt, build_family, probe_report, retrieval_report
from bcemb.compat.vectors import Vectors, read_vectors, write_vectors

__all__ = [
    "FAMILIES",
    "AdaptReport",
    "Vectors",
    "adapt",
    "build_family",
    "probe_report",
    "read_vectors",
    "retrieval_report",
    "write_vectors",
]
