"""The training loop shared by every method, and the objects it takes."""

from bcemb.training.aligner import Aligner, fit
from bcemb.training.config import TrainConfig
from bcemb.training.objectives import Evaluator, Objective, StepOutput
from bcemb.training.recommender import BPRObjective, VersionData
from bcemb.training.trainer import Alignment, TrainOutcome, fit_posthoc, recall_view, train_model

__all__ = [
    "Aligner",
    "Alignment",
    "BPRObjective",
    "Evaluator",
    "Objective",
    "StepOutput",
    "TrainConfig",
    "TrainOutcome",
    "VersionData",
    "fit",
    "fit_posthoc",
    "recall_view",
    "train_model",
]
