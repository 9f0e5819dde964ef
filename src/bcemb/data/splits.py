"""Time slices of an evolving graph and the per-version train/validation split.

PROTOCOL section 4: each edge gets the ratio ``r = rank / (E - 1)``; ``E_k`` holds the edges
with ``r <= t_k``. Version ``k`` trains on ``E_k`` plus some edges of new users in the window
``(t_k, t_{k+1}]`` and validates on the rest of the window.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from bcemb.data.graph import DataError, EvolvingGraph

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TIMES", "TimeSlices", "VersionSplit"]

#: t_0 .. t_4 for the five versions, then t_5 = 1.0 closing the last validation window.
DEFAULT_TIMES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class VersionSplit:
    """Training and validation edges of version ``k``.

    Attributes:
        k: The version.
        num_users: Users present by ``t_{k+1}`` (indices ``0..num_users-1``).
        num_items: Items present by ``t_{k+1}``.
        num_users_at_t: Users present by ``t_k``.
        num_items_at_t: Items present by ``t_k``.
        train_edges: Edge ids (into the graph's arrays) used for training. Shape ``[E_train]``.
        val_edges: Edge ids used for validation. Shape ``[E_val]``.
        num_new_users: Users first seen in ``(t_k, t_{k+1}]``.
    """

    k: int
    num_users: int
    num_items: int
    num_users_at_t: int
    num_items_at_t: int
    train_edges: np.ndarray
    val_edges: np.ndarray
    num_new_users: int


class TimeSlices:
    """The time slices ``E_0 ⊂ E_1 ⊂ ...`` of a graph and their splits.

    Args:
        graph: The evolving graph.
        times: Increasing time fractions ``t_0 .. t_K`` then the closing ``t_{K+1}`` (usually
            1.0). ``len(times) - 1`` versions are defined.
    """

    def __init__(self, graph: EvolvingGraph, times: Sequence[float] = DEFAULT_TIMES) -> None:
        times = tuple(float(t) for t in times)
        if len(times) < 2:
            raise DataError("need at least two time fractions (t_0 and the closing t)")
        if any(not 0.0 < t <= 1.0 for t in times) or any(
            a >= b for a, b in zip(times, times[1:], strict=False)
        ):
            raise DataError(f"time fractions must increase within (0, 1], got {list(times)}")
        self.graph = graph
        self.times = times
        e = graph.num_edges
        if e < 2:
            raise DataError(f"the log is too small for time slices: {e} edge(s)")
        ratio = np.arange(e, dtype=np.float64) / (e - 1)
        self._edges_at = [int(np.searchsorted(ratio, t + 1e-12, side="right")) for t in times]
        counts = [self._edges_at[0]] + [
            b - a for a, b in zip(self._edges_at, self._edges_at[1:], strict=False)
        ]
        if min(counts) == 0:
            raise DataError(
                f"the log ({e} edges) is too small for the slices {list(times)}: "
                f"edges per slice {counts}"
            )
        # Users/items are indexed by first appearance: those present at t are 0..n(t)-1.
        self._users_at = np.maximum.accumulate(graph.user)
        self._items_at = np.maximum.accumulate(graph.item)

    @property
    def num_versions(self) -> int:
        """Number of versions ``K + 1``."""
        return len(self.times) - 1

    def num_edges(self, k: int) -> int:
        """``|E_k|``: edges with ratio ``<= t_k`` (``k`` may be ``num_versions``)."""
        return self._edges_at[self._check(k, closing=True)]

    def num_users(self, k: int) -> int:
        """Users present in ``E_k``."""
        return int(self._users_at[self.num_edges(k) - 1]) + 1

    def num_items(self, k: int) -> int:
        """Items present in ``E_k``."""
        return int(self._items_at[self.num_edges(k) - 1]) + 1

    def window(self, k: int) -> np.ndarray:
        """Edge ids in ``(t_k, t_{k+1}]``."""
        self._check(k)
        return np.arange(self.num_edges(k), self.num_edges(k + 1))

    def _check(self, k: int, *, closing: bool = False) -> int:
        top = self.num_versions if closing else self.num_versions - 1
        if not 0 <= k <= top:
            raise DataError(f"unknown version {k}; versions are 0..{self.num_versions - 1}")
        return k

    def split(self, k: int) -> VersionSplit:
        """The train/validation split of version ``k`` (train time t_k, validation t_{k+1}).

        Window edges of users present at ``t_k`` validate. A new user with one window edge
        trains on it; with several, all but the last train and the last validates.
        """
        return self._splits[self._check(k)]

    @cached_property
    def _splits(self) -> list[VersionSplit]:
        return [self._make_split(k) for k in range(self.num_versions)]

    def _make_split(self, k: int) -> VersionSplit:
        g = self.graph
        n_users_t = self.num_users(k)
        win = self.window(k)
        win_user = g.user[win]
        is_new = win_user >= n_users_t
        new_edges = win[is_new]
        new_users = win_user[is_new]
        # Last window edge of each new user: first occurrence in the reversed order.
        _, last_rev, counts = np.unique(new_users[::-1], return_index=True, return_counts=True)
        last_pos = len(new_users) - 1 - last_rev
        to_val = np.zeros(len(new_users), dtype=bool)
        to_val[last_pos[counts > 1]] = True
        train_edges = np.concatenate([np.arange(self.num_edges(k)), new_edges[~to_val]])
        val_edges = np.sort(np.concatenate([win[~is_new], new_edges[to_val]]))
        return VersionSplit(
            k=k,
            num_users=self.num_users(k + 1),
            num_items=self.num_items(k + 1),
            num_users_at_t=n_users_t,
            num_items_at_t=self.num_items(k),
            train_edges=np.sort(train_edges),
            val_edges=val_edges,
            num_new_users=int(counts.shape[0]),
        )
