"""Labels of the five unintended (consumer) tasks, PROTOCOL section 6 / paper appendix A.2.

Every task is binary. ``time`` says at which ``t_k`` the inputs are embedded; the consumer is
trained at ``t_0`` on ver-0 embeddings and tested at later times on ver-0 compatible ones.

* user activity: users present at ``t_k``; any edge in ``(t_k, t_{k+1}]``?
* user positive activity: any edge rated >= 4 in that window?
* item rating avg: items with >= 10 ratings by ``t_k``; mean rating until the label time
  >= the median of the training items' means at ``t_0``?
* item rating std: the same items; sample standard deviation (ddof=1) >= 1?
* edge rating: (user, item) pairs; rating >= 4?
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bcemb.data.graph import DataError
from bcemb.data.splits import TimeSlices

logger = logging.getLogger(__name__)

__all__ = ["TASKS", "RATING_TASKS", "TaskData", "ConsumerTasks"]

TASKS: tuple[str, ...] = (
    "user_activity",
    "user_positive_activity",
    "item_rating_avg",
    "item_rating_std",
    "edge_rating",
)

#: The tasks whose labels come from ratings.
RATING_TASKS: tuple[str, ...] = ("user_positive_activity", "item_rating_avg", "item_rating_std", "edge_rating")

_KIND: dict[str, Literal["user", "item", "edge"]] = {
    "user_activity": "user",
    "user_positive_activity": "user",
    "item_rating_avg": "item",
    "item_rating_std": "item",
    "edge_rating": "edge",
}


@dataclass(frozen=True)
class TaskData:
    """Inputs and labels of one task at one time.

    Attributes:
        task: Task name (one of :data:`TASKS`).
        kind: ``user``, ``item`` or ``edge``: which embeddings form the input.
        time: The ``k`` of ``t_k`` at which the inputs are embedded.
        index: Node ids (``[N]``) or (user, item) pairs (``[N, 2]``).
        label: Binary labels. Shape ``[N]``.
    """

    task: str
    kind: Literal["user", "item", "edge"]
    time: int
    index: np.ndarray
    label: np.ndarray

    @property
    def positive_rate(self) -> float:
        """Share of positive labels."""
        return float(self.label.mean()) if self.label.size else float("nan")

    def __len__(self) -> int:
        return int(self.label.shape[0])


class ConsumerTasks:
    """The five tasks' train, validation and test sets over the time slices.

    Args:
        slices: The time slices of the graph.
        min_item_ratings: Items need this many ratings by ``t_k`` for the item tasks.
        positive_rating: A rating at or above this is positive.
    """

    def __init__(
        self, slices: TimeSlices, *, min_item_ratings: int = 10, positive_rating: float = 4.0
    ) -> None:
        self.slices = slices
        self.min_item_ratings = min_item_ratings
        self.positive_rating = positive_rating
        #: Tasks that cannot be labelled on this log -> why (own data: constant or no ratings,
        #: too few ratings per item, one class only). Their consumers are not trained.
        self.skipped: dict[str, str] = {}
        self.item_avg_threshold = float("nan")
        self._test_times: dict[str, list[int]] = {}
        ratings = slices.graph.rating[: slices.num_edges(slices.num_versions)]
        if ratings.size and np.all(ratings == ratings[0]):
            for task in RATING_TASKS:
                self.skipped[task] = f"every rating is {ratings[0]:g} (constant or no ratings)"
        mean0, _, ok0 = self._item_stats(0, 0)
        if not ok0.any():
            for task in ("item_rating_avg", "item_rating_std"):
                self.skipped.setdefault(task, f"no item has {min_item_ratings} ratings by t_0")
        else:
            self.item_avg_threshold = float(np.median(mean0[ok0]))
        for task in TASKS:
            self._check_labels(task)
        for task, why in self.skipped.items():
            logger.warning("consumer task %s skipped: it cannot be labelled on this log (%s)", task, why)

    def _check_labels(self, task: str) -> None:
        """Skip a task whose training or validation labels have one class; drop such test times."""
        for split, data in (("training", self._data(task, "train", 0)), ("validation", self._val(task))):
            if task not in self.skipped and (len(data) == 0 or np.unique(data.label).size < 2):
                self.skipped[task] = (
                    f"its {split} labels at t_{data.time} have one class only "
                    f"({len(data)} rows, positive rate {data.positive_rate:.2f})"
                )
        first = 2 if _kind(task) == "user" else 1
        times = []
        for k in range(first, self.slices.num_versions):
            data = self._data(task, "test", k)
            if len(data) and np.unique(data.label).size == 2:
                times.append(k)
            elif task not in self.skipped:
                logger.warning(
                    "consumer task %s not tested at t_%d: its test labels have one class only "
                    "(%d rows)", task, k, len(data),
                )
        if not times and task not in self.skipped:
            self.skipped[task] = "no test time has labels of both classes"
        self._test_times[task] = times

    # -- public API -------------------------------------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks that can be labelled on this log (:data:`TASKS` less :attr:`skipped`)."""
        return tuple(t for t in TASKS if t not in self.skipped)

    def train(self, task: str) -> TaskData:
        """Training set at ``t_0`` (also of a skipped task: it is skipped because of them)."""
        return self._data(task, "train", 0)

    def val(self, task: str) -> TaskData:
        """Validation set (user tasks at ``t_1``; item and edge tasks on ``t_0`` inputs)."""
        return self._val(task)

    def _val(self, task: str) -> TaskData:
        return self._data(task, "val", 1 if _kind(task) == "user" else 0)

    def test_times(self, task: str) -> list[int]:
        """The ``k`` at which the task is tested: ``k >= 2`` for user tasks, else ``k >= 1``,
        less the times whose labels have one class (an AUC needs both)."""
        _kind(task)
        return list(self._test_times[task])

    def test(self, task: str, k: int) -> TaskData:
        """Test set at ``t_k``."""
        if k not in self.test_times(task):
            raise DataError(f"task {task!r} is not tested at t_{k}; times: {self.test_times(task)}")
        return self._data(task, "test", k)

    def all_sets(self) -> Iterator[tuple[str, str, TaskData]]:
        """Yield ``(task, split, data)`` for every labelled task's train, val and test sets."""
        for task in self.tasks:
            yield task, "train", self.train(task)
            yield task, "val", self.val(task)
            for k in self.test_times(task):
                yield task, f"test@{k}", self.test(task, k)

    # -- builders ---------------------------------------------------------------------------
    def _data(self, task: str, split: str, k: int) -> TaskData:
        kind = _kind(task)
        if kind == "user":
            index, label = self._user_task(k, positive=task == "user_positive_activity")
        elif kind == "item":
            # Paper A.2: train on labels until t_0, validate on labels until t_1 (same items),
            # test at t_k on labels until t_{k+1}.
            until = {"train": 0, "val": 1}.get(split, k + 1)
            index, label = self._item_task(k, until, std=task == "item_rating_std")
        else:
            index, label = self._edge_task(k, split)
        return TaskData(task=task, kind=kind, time=k, index=index, label=label.astype(np.int64))

    def _user_task(self, k: int, *, positive: bool) -> tuple[np.ndarray, np.ndarray]:
        g, s = self.slices.graph, self.slices
        n = s.num_users(k)
        win = s.window(k)
        if positive:
            win = win[g.rating[win] >= self.positive_rating]
        users = g.user[win]
        label = np.zeros(n, dtype=bool)
        label[users[users < n]] = True
        return np.arange(n), label

    def _item_stats(self, k: int, until: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per item present at t_k: mean and sample std over ratings until ``t_until``, and
        whether it has enough ratings by ``t_k``."""
        g, s = self.slices.graph, self.slices
        n = s.num_items(k)
        e_k = s.num_edges(k)
        e_u = s.num_edges(until)
        enough = np.bincount(g.item[:e_k], minlength=n)[:n] >= self.min_item_ratings
        item, r = g.item[:e_u], g.rating[:e_u].astype(np.float64)
        keep = item < n
        item, r = item[keep], r[keep]
        cnt = np.bincount(item, minlength=n).astype(np.float64)
        tot = np.bincount(item, weights=r, minlength=n)
        sq = np.bincount(item, weights=r * r, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = tot / cnt
            # (n sum r^2 - (sum r)^2) / (n (n - 1)) is exact for integer ratings (all sums are
            # integers below 2^53), so a standard deviation of exactly 1 is labelled positive;
            # the textbook one-pass form loses the last bit there.
            var = np.clip(cnt * sq - tot * tot, 0.0, None) / (cnt * (cnt - 1))
        return mean, np.sqrt(var), enough

    def _item_task(self, k: int, until: int, *, std: bool) -> tuple[np.ndarray, np.ndarray]:
        mean, sd, enough = self._item_stats(k, until)
        items = np.flatnonzero(enough)
        label = sd[items] >= 1.0 if std else mean[items] >= self.item_avg_threshold
        return items, label

    def _edge_task(self, k: int, split: str) -> tuple[np.ndarray, np.ndarray]:
        g, s = self.slices.graph, self.slices
        if split == "train":
            edges = np.arange(s.num_edges(0))
        else:  # val: E_1 \ E_0 on t_0 inputs; test at t_k: E_{k+1} \ E_k
            edges = s.window(0 if split == "val" else k)
        index = np.stack([g.user[edges], g.item[edges]], axis=1)
        return index, g.rating[edges] >= self.positive_rating


def _kind(task: str) -> Literal["user", "item", "edge"]:
    if task not in _KIND:
        raise DataError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return _KIND[task]
