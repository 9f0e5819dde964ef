"""The training loop shared by every method."""

from bcemb.training.config import TrainConfig
from bcemb.training.trainer import (
    Alignment,
    TrainOutcome,
    VersionData,
    evaluate_model,
    fit_posthoc,
    train_model,
)

__all__ = [
    "Alignment",
    "TrainConfig",
    "TrainOutcome",
    "VersionData",
    "evaluate_model",
    "fit_posthoc",
    "train_model",
]
