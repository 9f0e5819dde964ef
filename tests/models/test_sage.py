import numpy as np
import pytest
import torch

from bcemb.models import GraphInput, SageConfig, SageEncoder, load_model, save_module
from bcemb.models.sage import mean_aggregate


def _input(graph, n_edges=None):
    n = graph.num_edges if n_edges is None else n_edges
    return GraphInput.build(graph, np.arange(n), num_users=graph.num_users, num_items=graph.num_items)


def _model(graph, layers=2, dim=8):
    return SageEncoder(SageConfig(layers, dim, {k: len(v.vocab) for k, v in graph.item_features.items()}))


def test_layer_equals_pyg_sageconv(toy_graph, seed):
    torch.manual_seed(seed)
    gi = _input(toy_graph)
    model = _model(toy_graph)
    x = model.node_features(gi)
    conv = model.convs[0]
    ours = conv.lin_l(mean_aggregate(x, gi)) + conv.lin_r(x)
    assert torch.allclose(ours, conv(x, gi.adj_t), atol=1e-5)
    # Gradients agree as well (our backward uses the precomputed transpose).
    x1 = x.detach().requires_grad_()
    x2 = x.detach().requires_grad_()
    (conv.lin_l(mean_aggregate(x1, gi)) + conv.lin_r(x1)).pow(2).sum().backward()
    conv(x2, gi.adj_t).pow(2).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-4)


def test_shapes_and_inductive_new_nodes(toy_graph):
    model = _model(toy_graph, layers=3, dim=6).eval()
    gi = _input(toy_graph, n_edges=toy_graph.num_edges // 2)  # later nodes have no edges
    user_emb, item_emb = model(gi)
    assert user_emb.shape == (toy_graph.num_users, 6) and item_emb.shape == (toy_graph.num_items, 6)
    assert torch.isfinite(user_emb).all() and torch.isfinite(item_emb).all()


def test_save_load_round_trip(toy_graph, tmp_path):
    model = _model(toy_graph).eval()
    save_module(tmp_path / "m.safetensors", model, model.config.to_dict())
    loaded = load_model(tmp_path / "m.safetensors")
    gi = _input(toy_graph)
    for a, b in zip(model(gi), loaded(gi), strict=True):
        assert torch.equal(a, b)
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_model(tmp_path / "bad.safetensors")
