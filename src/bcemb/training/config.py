"""Training hyperparameters shared by every method."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """How one model version is trained (PROTOCOL section 5 by default).

    Attributes:
        epochs: Maximum epochs.
        batch_size: BPR triples per optimisation step.
        lr: Adam learning rate.
        weight_decay: Weight on the batch-embedding norm in the BPR loss.
        eval_every: Evaluate Recall@K every this many epochs (and after the last epoch).
        warmup_epochs: Joint methods only keep epochs after this (their alignment loss needs
            time to settle).
        patience: Stop after this many evaluations without a better Recall@primary_k
            (``None``: never stop early, as in the paper). The same rule for every method:
            no run stops within ``warmup_epochs``, joint or not.
        ks: The K of Recall@K.
        primary_k: The K that selects the best epoch.
        posthoc_steps: Full-batch Adam steps to fit a post-hoc transform on frozen embeddings.
        posthoc_lr: Their learning rate.
        posthoc_tol: Stop fitting when the loss improves by less than this fraction over
            100 steps.
        device: ``cpu``, ``cuda``, ``cuda:1``, or ``auto`` (CUDA when present).
        mode: How a batch's embeddings are computed: ``full`` (every node on the full graph,
            the paper's setting), ``sampled`` (the batch's nodes through neighbour-sampled
            subgraphs) or ``auto`` (sampled above
            :data:`~bcemb.training.recommender.SAMPLED_ABOVE_EDGES` training edges).
        fanouts: Neighbours kept per hop in sampled mode, the seeds' hop first (``-1``: all),
            padded with the last value to the model's depth.
        deterministic: Use PyTorch's deterministic kernels while training, so that a seed
            reproduces a run bit for bit (multithreaded scatter-adds otherwise differ in the
            last bits, and training amplifies that).
    """

    epochs: int = 500
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.01
    eval_every: int = 10
    warmup_epochs: int = 50
    patience: int | None = None
    ks: tuple[int, ...] = (10, 20, 50, 100)
    primary_k: int = 50
    posthoc_steps: int = 3000
    posthoc_lr: float = 1e-2
    posthoc_tol: float = 1e-4
    device: str = "cpu"
    deterministic: bool = True
    mode: str = "full"
    fanouts: tuple[int, ...] = (25,)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        for name in ("epochs", "batch_size", "eval_every", "posthoc_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.posthoc_lr <= 0:
            raise ValueError("learning rates must be positive")
        if self.primary_k not in self.ks:
            raise ValueError(f"primary_k={self.primary_k} is not among ks={self.ks}")
        if self.mode not in ("full", "sampled", "auto"):
            raise ValueError(f"mode must be full, sampled or auto, got {self.mode!r}")
        if not self.fanouts or any(f == 0 or f < -1 for f in self.fanouts):
            raise ValueError(f"fanouts must be positive or -1 (all neighbours), got {self.fanouts}")
        if self.patience is not None and self.patience < 1:
            raise ValueError("patience must be >= 1 or None")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["ks"] = list(self.ks)
        d["fanouts"] = list(self.fanouts)
        return d
