"""The evolving interaction log: user-item edges with ratings and timestamps.

Users and items are re-indexed by first appearance in time, so the users present at any time
fraction ``t`` are exactly ``0 .. n_users(t) - 1`` (likewise items). Item features are named
multi-hot groups stored as CSR bags, ready for :class:`torch.nn.EmbeddingBag`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["FeatureGroup", "EvolvingGraph", "DataError"]


class DataError(ValueError):
    """Raised for input data that cannot be turned into an evolving graph."""


@dataclass(frozen=True)
class FeatureGroup:
    """One multi-hot item feature group (for example ``brand`` or ``category``) as CSR bags.

    Attributes:
        vocab: Feature value names; index ``f`` of a bag refers to ``vocab[f]``.
        indices: Flat feature indices of all items. Shape ``[nnz]``.
        offsets: Start of each item's bag in ``indices``. Shape ``[num_items + 1]``.
    """

    vocab: tuple[str, ...]
    indices: np.ndarray
    offsets: np.ndarray

    @property
    def num_items(self) -> int:
        """Number of items the bags cover."""
        return len(self.offsets) - 1

    def bag(self, item: int) -> list[str]:
        """The feature names of one item."""
        return [self.vocab[f] for f in self.indices[self.offsets[item] : self.offsets[item + 1]]]

    @staticmethod
    def from_lists(
        bags: Sequence[Iterable[str]], *, min_count: int = 1
    ) -> FeatureGroup:
        """Build a group from one list of feature names per item.

        Values seen on fewer than ``min_count`` items are dropped (the paper drops features
        with a frequency below 5). Duplicates within one item count once.
        """
        bags = [sorted(set(b)) for b in bags]
        counts = Counter(v for b in bags for v in b)
        vocab = tuple(sorted(v for v, c in counts.items() if c >= min_count))
        index = {v: i for i, v in enumerate(vocab)}
        flat: list[int] = []
        offsets = [0]
        for b in bags:
            flat.extend(index[v] for v in b if v in index)
            offsets.append(len(flat))
        return FeatureGroup(
            vocab=vocab,
            indices=np.asarray(flat, dtype=np.int64),
            offsets=np.asarray(offsets, dtype=np.int64),
        )


@dataclass
class EvolvingGraph:
    """A time-sorted user-item interaction log.

    Attributes:
        user: Re-indexed user of each edge. Shape ``[E]``.
        item: Re-indexed item of each edge. Shape ``[E]``.
        rating: Rating of each edge (1..5). Shape ``[E]``.
        timestamp: Time of each edge, non-decreasing. Shape ``[E]``.
        user_ids: Original id of each re-indexed user. Shape ``[num_users]``.
        item_ids: Original id of each re-indexed item. Shape ``[num_items]``.
        item_features: Named multi-hot feature groups over the re-indexed items.
        name: A short name of the source.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_features: dict[str, FeatureGroup] = field(default_factory=dict)
    name: str = "graph"

    @property
    def num_edges(self) -> int:
        """Number of interactions."""
        return int(self.user.shape[0])

    @property
    def num_users(self) -> int:
        """Number of distinct users."""
        return int(self.user_ids.shape[0])

    @property
    def num_items(self) -> int:
        """Number of distinct items."""
        return int(self.item_ids.shape[0])

    def __repr__(self) -> str:
        groups = ", ".join(f"{k}={len(g.vocab)}" for k, g in self.item_features.items())
        return (
            f"EvolvingGraph(name={self.name!r}, users={self.num_users}, items={self.num_items}, "
            f"edges={self.num_edges}, features=[{groups}])"
        )

    @staticmethod
    def from_log(
        user: Sequence | np.ndarray,
        item: Sequence | np.ndarray,
        rating: Sequence | np.ndarray,
        timestamp: Sequence | np.ndarray,
        *,
        item_features: Mapping[str, Mapping[object, Iterable[str]]] | None = None,
        min_feature_count: int = 1,
        name: str = "graph",
    ) -> EvolvingGraph:
        """Build a graph from raw columns with original ids.

        Edges are sorted by time with a stable sort (ties keep input order); users and items
        are re-indexed by first appearance in that order.

        Args:
            user: Original user id of each edge.
            item: Original item id of each edge.
            rating: Rating of each edge.
            timestamp: Time of each edge (any numeric unit).
            item_features: ``{group: {original_item_id: [feature names]}}``; items missing
                from a group have an empty bag.
            min_feature_count: Feature values on fewer items than this are dropped.
            name: A short name of the source.
        """
        user = np.asarray(user)
        item = np.asarray(item)
        rating = np.asarray(rating, dtype=np.float32)
        timestamp = np.asarray(timestamp)
        n = user.shape[0]
        if not (item.shape[0] == rating.shape[0] == timestamp.shape[0] == n):
            raise DataError("user, item, rating and timestamp columns differ in length")
        if n == 0:
            raise DataError("the interaction log is empty")
        if not np.issubdtype(timestamp.dtype, np.number):
            raise DataError(f"timestamps must be numeric, got dtype {timestamp.dtype}")
        if np.isnan(rating).any() or (timestamp.dtype.kind == "f" and np.isnan(timestamp).any()):
            raise DataError("the log holds NaN ratings or timestamps")
        order = np.argsort(timestamp, kind="stable")
        user, item, rating, timestamp = user[order], item[order], rating[order], timestamp[order]
        # pd.factorize would do this too; np.unique + argsort of first positions keeps
        # the dependency surface small and is just as fast.
        user_ids, user_idx = _first_appearance(user)
        item_ids, item_idx = _first_appearance(item)
        groups: dict[str, FeatureGroup] = {}
        for gname, mapping in (item_features or {}).items():
            bags = [mapping.get(_unbox(i), ()) for i in item_ids]
            groups[gname] = FeatureGroup.from_lists(bags, min_count=min_feature_count)
        return EvolvingGraph(
            user=user_idx,
            item=item_idx,
            rating=rating,
            timestamp=timestamp.astype(np.int64) if timestamp.dtype.kind in "iu" else timestamp,
            user_ids=user_ids,
            item_ids=item_ids,
            item_features=groups,
            name=name,
        )


def _unbox(x: object) -> object:
    return x.item() if isinstance(x, np.generic) else x


def _first_appearance(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map values to 0..n-1 in order of first appearance; returns (ids, index per value)."""
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique values ranked by first position
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    return uniq[order], rank[inverse.reshape(-1)].astype(np.int64)
