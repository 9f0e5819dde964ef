"""Consumer models C_0 for the unintended tasks: trained once on ver-0 embeddings, then fed
ver-0 compatible embeddings at later times (PROTOCOL section 6)."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bcemb.data.consumer_tasks import ConsumerTasks, TaskData
from bcemb.evaluation.metrics import roc_auc
from bcemb.models.io import read_tensors, save_module
from bcemb.models.mlp import ConsumerMLP
from bcemb.seeding import derive_seed
from bcemb.utils import progress, read_json, write_json

logger = logging.getLogger(__name__)


@dataclass
class ConsumerConfig:
    """How the consumer MLPs of the unintended tasks are trained (PROTOCOL section 6).

    Attributes:
        hidden: Hidden sizes to choose from on validation.
        dropout: Dropout ratios to choose from on validation.
        seeds: Seeds whose test ROC-AUC is averaged.
        epochs: Maximum epochs.
        patience: Early stopping after this many epochs without a better validation AUC.
        batch_size: Mini-batch size.
        lr: Adam learning rate.
    """

    hidden: tuple[int, ...] = (128, 256, 512, 1024)
    dropout: tuple[float, ...] = (0.0, 0.25, 0.5)
    seeds: int = 10
    epochs: int = 300
    patience: int = 20
    batch_size: int = 2048
    lr: float = 1e-3

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)


__all__ = ["ConsumerConfig", "task_inputs", "fit_consumer", "ConsumerSuite"]

#: ``k -> (user_emb, item_emb)``: ver-0 (or ver-0 compatible) embeddings at ``t_k``.
EmbeddingsAt = Callable[[int], tuple[Tensor, Tensor]]


def task_inputs(data: TaskData, user_emb: Tensor, item_emb: Tensor) -> Tensor:
    """The consumer's input rows: a user's, an item's, or a (user, item) pair's embeddings.

    Shapes:
        user_emb ``[U, D]``, item_emb ``[I, D]`` -> ``[N, D]`` (``[N, 2D]`` for edges).
    """
    idx = torch.as_tensor(data.index, dtype=torch.long, device=user_emb.device)
    if data.kind == "user":
        return user_emb[idx]
    if data.kind == "item":
        return item_emb[idx]
    return torch.cat([user_emb[idx[:, 0]], item_emb[idx[:, 1]]], dim=1)


@torch.no_grad()
def _predict(model: ConsumerMLP, x: Tensor, batch: int = 65536) -> Tensor:
    model.eval()
    return torch.cat([model(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def fit_consumer(
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    *,
    hidden: int,
    dropout: float,
    config: ConsumerConfig,
    seed: int,
) -> tuple[ConsumerMLP, float]:
    """Train one MLP with BCE, Adam and early stopping on validation ROC-AUC.

    Returns the model at its best validation epoch and that AUC.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = ConsumerMLP(x_train.shape[1], hidden, dropout).to(x_train.device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    y = y_train.float()
    best_auc, best_state, bad = -1.0, copy.deepcopy(model.state_dict()), 0
    n = x_train.shape[0]
    for _ in range(config.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(x_train.device)
        for i in range(0, n, config.batch_size):
            b = perm[i : i + config.batch_size]
            if b.numel() < 2:  # BatchNorm needs two rows
                continue
            loss = F.binary_cross_entropy_with_logits(model(x_train[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        auc = roc_auc(y_val, _predict(model, x_val))
        if auc > best_auc:
            best_auc, best_state, bad = auc, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= config.patience:
                break
    model.load_state_dict(best_state)
    return model.eval(), best_auc


@dataclass
class _Trained:
    hidden: int
    dropout: float
    models: list[ConsumerMLP]


class ConsumerSuite:
    """The consumers ``C_0`` of the five tasks, trained on real ver-0 embeddings.

    Hidden size and dropout are chosen on validation with the first seed; then
    ``config.seeds`` models are trained with the chosen setting and their test AUCs averaged.
    Trained consumers are saved under ``folder`` and reloaded on a rerun.

    Args:
        tasks: The consumer tasks of the graph.
        config: Consumer hyperparameters.
        seed: Base seed.
        folder: Where trained consumers are kept (None: not saved).
    """

    def __init__(
        self, tasks: ConsumerTasks, config: ConsumerConfig, *, seed: int, folder: str | Path | None = None
    ) -> None:
        self.tasks = tasks
        self.config = config
        self.seed = seed
        self.folder = Path(folder) if folder is not None else None
        self.trained: dict[str, _Trained] = {}

    def fit(self, real_z0: EmbeddingsAt, *, show_progress: bool | None = None) -> None:
        """Train (or load) every task's consumers on ver-0 embeddings from ``real_z0``."""
        for task in progress(self.tasks.tasks, desc="consumers", show=show_progress, leave=False):
            loaded = self._load(task)
            self.trained[task] = loaded if loaded is not None else self._fit_task(task, real_z0)

    def _fit_task(self, task: str, real_z0: EmbeddingsAt) -> _Trained:
        tr, va = self.tasks.train(task), self.tasks.val(task)
        x_tr, x_va = task_inputs(tr, *real_z0(tr.time)), task_inputs(va, *real_z0(va.time))
        y_tr = torch.as_tensor(tr.label, device=x_tr.device)
        y_va = torch.as_tensor(va.label, device=x_tr.device)
        select_seed = derive_seed(self.seed, "consumer", task, 0)
        best = None
        for hidden in self.config.hidden:
            for dropout in self.config.dropout:
                model, auc = fit_consumer(
                    x_tr, y_tr, x_va, y_va, hidden=hidden, dropout=dropout,
                    config=self.config, seed=select_seed,
                )
                if best is None or auc > best[0]:
                    best = (auc, hidden, dropout, model)
        assert best is not None
        _, hidden, dropout, first = best
        models = [first]
        for s in range(1, self.config.seeds):
            model, _ = fit_consumer(
                x_tr, y_tr, x_va, y_va, hidden=hidden, dropout=dropout, config=self.config,
                seed=derive_seed(self.seed, "consumer", task, s),
            )
            models.append(model)
        logger.info("consumer %s: hidden %d, dropout %.2f, val AUC %.4f", task, hidden, dropout, best[0])
        trained = _Trained(hidden, dropout, models)
        self._save(task, trained, float(best[0]))
        return trained

    def _save(self, task: str, trained: _Trained, val_auc: float) -> None:
        if self.folder is None:
            return
        d = self.folder / task
        for s, model in enumerate(trained.models):
            save_module(d / f"seed_{s}.safetensors", model, {"hidden": trained.hidden, "dropout": trained.dropout})
        write_json(
            d / "selection.json",
            {"hidden": trained.hidden, "dropout": trained.dropout, "val_auc": val_auc,
             "seeds": len(trained.models), "in_dim": trained.models[0].net[0].in_features},
        )

    def _load(self, task: str) -> _Trained | None:
        if self.folder is None or not (self.folder / task / "selection.json").is_file():
            return None
        sel = read_json(self.folder / task / "selection.json")
        if sel["seeds"] != self.config.seeds:
            return None
        models = []
        for s in range(sel["seeds"]):
            tensors, _ = read_tensors(self.folder / task / f"seed_{s}.safetensors")
            model = ConsumerMLP(sel["in_dim"], sel["hidden"], sel["dropout"])
            model.load_state_dict(tensors)
            models.append(model.eval())
        return _Trained(sel["hidden"], sel["dropout"], models)

    def score(self, task: str, k: int, user_emb: Tensor, item_emb: Tensor) -> list[float]:
        """Test ROC-AUC of every seed's consumer at ``t_k`` on the given ver-0 compatible embeddings."""
        data = self.tasks.test(task, k)
        x = task_inputs(data, user_emb, item_emb)
        expected = self.trained[task].models[0].net[0].in_features
        if x.shape[1] != expected:
            raise ValueError(f"consumer {task} takes dimension {expected}, got {x.shape[1]}")
        return [roc_auc(data.label, _predict(m.to(x.device), x)) for m in self.trained[task].models]

    def selection(self) -> dict[str, dict[str, float]]:
        """The chosen hidden size and dropout of every task."""
        return {t: {"hidden": v.hidden, "dropout": v.dropout} for t, v in self.trained.items()}

