"""The per-slice summary table of ``bcemb data stats``."""

from __future__ import annotations

import pandas as pd

from bcemb.data.consumer_tasks import TASKS, ConsumerTasks
from bcemb.data.splits import TimeSlices

__all__ = ["slice_stats", "slice_table"]


def slice_stats(slices: TimeSlices, tasks: ConsumerTasks | None = None) -> pd.DataFrame:
    """One row per version: time, users, items, train/val edges, new users and task labels.

    A task column holds ``count (positive rate)`` of the labels whose inputs are embedded at
    ``t_k`` (training set at k = 0, validation or test sets after).
    """
    rows = []
    for k in range(slices.num_versions):
        sp = slices.split(k)
        row: dict[str, object] = {
            "k": k,
            "t": slices.times[k],
            "users": slices.num_users(k),
            "items": slices.num_items(k),
            "edges": slices.num_edges(k),
            "train_edges": len(sp.train_edges),
            "val_edges": len(sp.val_edges),
            "new_users": sp.num_new_users,
        }
        if tasks is not None:
            for task in TASKS:
                if task in tasks.skipped:
                    row[task] = "skipped"
                    continue
                if k == 0:
                    d = tasks.train(task)
                elif k in tasks.test_times(task):
                    d = tasks.test(task, k)
                elif tasks.val(task).time == k:  # user tasks validate at t_1
                    d = tasks.val(task)
                else:
                    row[task] = "-"  # one class only at this time: not tested
                    continue
                row[task] = f"{len(d):,} ({d.positive_rate:.2f})"
        rows.append(row)
    return pd.DataFrame(rows)


def slice_table(slices: TimeSlices, tasks: ConsumerTasks | None = None) -> str:
    """:func:`slice_stats` as aligned text."""
    return slice_stats(slices, tasks).to_string(index=False)
