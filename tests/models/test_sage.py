import copy

import numpy as np
import pytest
import torch

from bcemb.models import GraphInput, SageConfig, SageEncoder, load_model, save_module
from bcemb.models.sage import mean_aggregate
from bcemb.models.sage_plan import item_types
from bcemb.models.sage_reference import plain_pyg_adjacency, plain_pyg_embed


def _input(graph, n_edges=None):
    n = graph.num_edges if n_edges is None else n_edges
    return GraphInput.build(graph, np.arange(n), num_users=graph.num_users, num_items=graph.num_items)


def _model(graph, layers=2, dim=8, bag_mode="sum", vocab_pad=0):
    sizes = {k: len(v.vocab) + vocab_pad for k, v in graph.item_features.items()}
    return SageEncoder(SageConfig(layers, dim, sizes, bag_mode))


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


@pytest.mark.parametrize("bag_mode", ["sum", "mean"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("vocab_pad", [0, 200])
def test_fast_step_equals_plain_pyg_step(toy_graph, seed, layers, bag_mode, vocab_pad):
    """The encoder's plan (one GEMM per layer, distinct rows first) is the plain PyG model.

    ``vocab_pad`` 0: layer 1 projects the feature tables (48 feature rows + 2 shared vectors,
    fewer than the item types); 200: the tables are larger, so it projects the item types.
    """
    torch.manual_seed(seed)
    gi = _input(toy_graph, n_edges=toy_graph.num_edges // 2)  # later nodes have no edges
    fast = _model(toy_graph, layers=layers, bag_mode=bag_mode, vocab_pad=vocab_pad)
    plain = copy.deepcopy(fast)
    plan = gi.sage_plan(layers)
    assert plan.num_input_items < toy_graph.num_items  # types are shared
    tables = 2 + sum(bag.num_embeddings for bag in fast.item_bags.values())
    assert fast.input_rows(plan) == (tables if vocab_pad == 0 else 1 + plan.num_input_items)
    out_fast = fast.embed(gi)
    out_plain = plain_pyg_embed(plain, gi, plain_pyg_adjacency(gi, "edge_index"))
    assert torch.allclose(out_fast, out_plain, atol=1e-4)
    # Same gradients for every parameter (same weights, same upstream gradient) ...
    up = torch.randn_like(out_plain)
    (out_fast * up).sum().backward()
    (out_plain * up).sum().backward()
    scale = max(p.grad.abs().max() for p in plain.parameters())
    for (name, p_fast), p_plain in zip(fast.named_parameters(), plain.parameters(), strict=True):
        g_fast = torch.zeros_like(p_fast) if p_fast.grad is None else p_fast.grad
        # atol relative to the largest gradient: the bias gradient is rounding noise around 0
        # (BatchNorm removes any bias), the rest agree to float32 precision.
        assert torch.allclose(g_fast, p_plain.grad, atol=3e-5 * scale), name
    # ... the same BatchNorm running statistics, and the same output in eval mode.
    for b_fast, b_plain in zip(fast.buffers(), plain.buffers(), strict=True):
        assert torch.allclose(b_fast.float(), b_plain.float(), atol=1e-5)
    fast.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.allclose(fast.embed(gi), plain_pyg_embed(plain, gi, gi.adj_t), atol=1e-4)


def test_item_types_group_equal_feature_multisets():
    # items 0 and 2 hold the same multiset (order differs), item 1 a different count of 3.
    idx = torch.tensor([3, 5, 3, 3, 5, 3])
    off = torch.tensor([0, 2, 4, 6])  # item 3 has an empty bag
    idx2 = torch.tensor([1, 1, 1])
    off2 = torch.tensor([0, 1, 2, 3])
    bags = {"a": (idx[:6], off[:4]), "b": (idx2, off2)}
    kinds, rep, counts = item_types(bags, 4)
    assert kinds[0] == kinds[2] and len({int(kinds[0]), int(kinds[1]), int(kinds[3])}) == 3
    assert counts.sum() == 4 and (kinds[rep] == torch.arange(len(rep))).all()
    # An extra key (e.g. "has neighbours") splits a type.
    kinds, _, _ = item_types(bags, 4, extra_key=torch.tensor([1, 0, 0, 1]))
    assert kinds[0] != kinds[2]


def test_shapes_and_inductive_new_nodes(toy_graph):
    model = _model(toy_graph, layers=3, dim=6).eval()
    gi = _input(toy_graph, n_edges=toy_graph.num_edges // 2)  # later nodes have no edges
    user_emb, item_emb = model(gi)
    assert user_emb.shape == (toy_graph.num_users, 6) and item_emb.shape == (toy_graph.num_items, 6)
    assert torch.isfinite(user_emb).all() and torch.isfinite(item_emb).all()


@pytest.mark.parametrize("bag_mode", ["sum", "mean"])
def test_save_load_round_trip(toy_graph, tmp_path, bag_mode):
    model = _model(toy_graph, bag_mode=bag_mode).eval()
    save_module(tmp_path / "m.safetensors", model, model.config.to_dict())
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.config.bag_mode == bag_mode
    gi = _input(toy_graph)
    for a, b in zip(model(gi), loaded(gi), strict=True):
        assert torch.equal(a, b)
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_model(tmp_path / "bad.safetensors")


def test_models_saved_before_bag_mode_load_as_sum(toy_graph, tmp_path):
    model = _model(toy_graph).eval()
    old = model.config.to_dict()
    del old["bag_mode"]  # what files written before the field existed hold
    save_module(tmp_path / "old.safetensors", model, old)
    assert load_model(tmp_path / "old.safetensors").config.bag_mode == "sum"


def test_bad_bag_mode_is_named(toy_graph):
    with pytest.raises(ValueError, match="bag_mode"):
        _model(toy_graph, bag_mode="max")


@pytest.mark.parametrize("affine", [True, False])
def test_weighted_batch_norm_equals_batch_norm_of_the_repeated_rows(seed, affine):
    """Rows standing for ``w`` identical rows each: output, every gradient and the running
    statistics are those of ``nn.BatchNorm1d`` on the rows repeated ``w`` times."""
    from bcemb.models.sage import _weighted_batch_norm

    torch.manual_seed(seed)
    x = torch.randn(7, 5) * 3 + 1
    w = torch.tensor([1.0, 3.0, 2.0, 1.0, 5.0, 1.0, 2.0])
    ours_norm = torch.nn.BatchNorm1d(5, affine=affine).train()
    ref_norm = copy.deepcopy(ours_norm)
    if affine:
        with torch.no_grad():
            for norm in (ours_norm, ref_norm):
                norm.weight.copy_(torch.linspace(0.5, 2.0, 5))
                norm.bias.copy_(torch.linspace(-1.0, 1.0, 5))
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    out = _weighted_batch_norm(x1, w, ours_norm)
    ref = ref_norm(x2.repeat_interleave(w.long(), dim=0))
    # A distinct row's output is its copies' output (the first copy of each).
    first = torch.cumsum(w.long(), 0) - w.long()
    assert torch.allclose(out, ref[first], atol=1e-5)
    up = torch.randn_like(out)
    (out * up).sum().backward()
    # The repeated rows' upstream gradient: each copy's share, so that the sums agree.
    (ref * (up / w.unsqueeze(1)).repeat_interleave(w.long(), dim=0)).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
    if affine:
        assert torch.allclose(ours_norm.weight.grad, ref_norm.weight.grad, atol=1e-5)
        assert torch.allclose(ours_norm.bias.grad, ref_norm.bias.grad, atol=1e-5)
    for b_ours, b_ref in zip(ours_norm.buffers(), ref_norm.buffers(), strict=True):
        assert torch.allclose(b_ours.float(), b_ref.float(), atol=1e-6)


def test_weighted_batch_norm_gradients_pass_gradcheck(seed):
    from bcemb.models.sage import _WeightedBatchNorm

    torch.manual_seed(seed)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.0, 2.0, 4.0, 1.0, 3.0, 1.0], dtype=torch.float64)
    gamma = torch.rand(4, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(4, dtype=torch.float64, requires_grad=True)
    share = w / w.sum()
    assert torch.autograd.gradcheck(
        lambda x, g, b: _WeightedBatchNorm.apply(x, share, g, b, 1e-5)[0], (x, gamma, beta)
    )
