"""Tensors of every version of one graph, built once and shared by all methods of a run."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

import torch

from bcemb.data.consumer_tasks import ConsumerTasks
from bcemb.data.graph import EvolvingGraph
from bcemb.data.splits import DEFAULT_TIMES, TimeSlices
from bcemb.models.base import build_model
from bcemb.models.graph_input import GraphInput
from bcemb.evaluation.intended import RecallEvaluator
from bcemb.training import BPRObjective, Evaluator, Objective, VersionData

if TYPE_CHECKING:
    from bcemb.experiments.config import ExperimentConfig
    from bcemb.methods import MethodContext, ModelCache

__all__ = ["ExperimentData"]


class ExperimentData:
    """An evolving graph, its time slices, version tensors and consumer tasks.

    Args:
        graph: The evolving graph.
        times: ``t_0 .. t_K`` and the closing ``t_{K+1}``.
        device: Where version tensors live.
    """

    def __init__(
        self, graph: EvolvingGraph, *, times: Sequence[float] = DEFAULT_TIMES, device: torch.device | str = "cpu"
    ) -> None:
        self.graph = graph
        self.slices = TimeSlices(graph, times)
        self.device = torch.device(device)
        self.feature_sizes = {name: len(g.vocab) for name, g in graph.item_features.items()}
        self._version = cache(self._build_version)
        self._tasks: ConsumerTasks | None = None

    @property
    def num_versions(self) -> int:
        """``K + 1``."""
        return self.slices.num_versions

    @property
    def tasks(self) -> ConsumerTasks:
        """The five consumer tasks (built on first use)."""
        if self._tasks is None:
            self._tasks = ConsumerTasks(self.slices)
        return self._tasks

    def version(self, k: int) -> VersionData:
        """Tensors of version ``k`` (cached)."""
        return self._version(k)

    def task(self, k: int, config: ExperimentConfig) -> tuple[Objective, Evaluator]:
        """The intended task of version ``k``: BPR and validation Recall@K."""
        data = self.version(k)
        t = config.train
        objective = BPRObjective(data, weight_decay=t.weight_decay, mode=t.mode, fanouts=t.fanouts)
        return objective, RecallEvaluator(data, t.ks, t.primary_k)

    def new_model(self, config: ExperimentConfig, size_index: int) -> torch.nn.Module:
        """A fresh ``config.model`` of the size-table row ``size_index`` for this graph."""
        layers, dim = config.sizes[size_index]
        spec = {"model": config.model, "num_layers": int(layers), "dim": int(dim),
                "feature_sizes": dict(self.feature_sizes)}
        return build_model(spec).to(self.device)

    def method_context(
        self, config: ExperimentConfig, *, cache: ModelCache | None = None, show_progress: bool | None = None
    ) -> MethodContext:
        """What a method needs to train versions on this graph under ``config``."""
        from bcemb.methods import MethodContext, ModelCache

        return MethodContext(
            task=lambda k: self.task(k, config),
            new_model=lambda i: self.new_model(config, i),
            dims=[int(dim) for _, dim in config.sizes],
            config=config.train,
            seed=config.seed,
            cache=cache if cache is not None else ModelCache(None),
            show_progress=show_progress,
            device=self.device,
        )

    def _build_version(self, k: int) -> VersionData:
        g, split = self.graph, self.slices.split(k)
        n = {"num_users": split.num_users, "num_items": split.num_items}
        train_graph = GraphInput.build(g, split.train_edges, **n)
        embed_graph = GraphInput.build(g, torch.arange(self.slices.num_edges(k)).numpy(), **n)

        def t(x):  # noqa: ANN001, ANN202
            return torch.as_tensor(x, dtype=torch.long)

        data = VersionData(
            k=k,
            train_graph=train_graph,
            embed_graph=embed_graph,
            train_user=t(g.user[split.train_edges]),
            train_item=t(g.item[split.train_edges]),
            val_user=t(g.user[split.val_edges]),
            val_item=t(g.item[split.val_edges]),
        )
        return data.to(self.device)
