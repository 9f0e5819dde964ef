"""The data layer: evolving graphs, time slices, splits, sampling and consumer-task labels."""

from bcemb.data.consumer_tasks import TASKS, ConsumerTasks, TaskData
from bcemb.data.datasets import DATASETS, load_dataset
from bcemb.data.graph import DataError, EvolvingGraph, FeatureGroup
from bcemb.data.splits import DEFAULT_TIMES, TimeSlices, VersionSplit

__all__ = [
    "DATASETS",
    "DEFAULT_TIMES",
    "TASKS",
    "ConsumerTasks",
    "DataError",
    "EvolvingGraph",
    "FeatureGroup",
    "TaskData",
    "TimeSlices",
    "VersionSplit",
    "load_dataset",
]
