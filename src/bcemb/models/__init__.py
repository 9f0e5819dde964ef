"""Embedding models (the :class:`EmbeddingModel` protocol, GraphSAGE) and consumer models (MLP)."""

from bcemb.models.base import MODELS, EmbeddingModel, build_model
from bcemb.models.graph_input import GraphInput
from bcemb.models.io import load_model, load_transform, save_model, save_module
from bcemb.models.mlp import ConsumerMLP
from bcemb.models.sage import SageConfig, SageEncoder

__all__ = [
    "MODELS",
    "ConsumerMLP",
    "EmbeddingModel",
    "GraphInput",
    "SageConfig",
    "SageEncoder",
    "build_model",
    "load_model",
    "load_transform",
    "save_model",
    "save_module",
]
