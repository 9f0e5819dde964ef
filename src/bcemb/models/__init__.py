"""Embedding models (GraphSAGE) and consumer models (MLP)."""

from bcemb.models.graph_input import GraphInput
from bcemb.models.io import load_model, load_transform, save_module
from bcemb.models.mlp import ConsumerMLP
from bcemb.models.sage import SageConfig, SageEncoder

__all__ = ["ConsumerMLP", "GraphInput", "SageConfig", "SageEncoder", "load_model", "load_transform", "save_module"]
