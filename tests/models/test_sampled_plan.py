import numpy as np
import pytest
import torch

from bcemb.models import GraphInput, SageConfig, SageEncoder
from bcemb.models.sampled_plan import build_sampled_plan, layer_fanouts, sample_neighbors


def _setup(graph, layers=2):
    gi = GraphInput.build(graph, np.arange(graph.num_edges * 2 // 3), num_users=graph.num_users, num_items=graph.num_items)
    sizes = {k: len(v.vocab) for k, v in graph.item_features.items()}
    return gi, SageEncoder(SageConfig(layers, 8, sizes))


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_all_neighbours_of_all_nodes_is_the_full_graph(toy_graph, seed, layers):
    torch.manual_seed(seed)
    gi, model = _setup(toy_graph, layers)
    plan = build_sampled_plan(gi, torch.arange(gi.num_nodes), layers, [-1])
    assert torch.allclose(model.run_plan(plan), model.embed(gi), atol=1e-4)  # train mode: same BN rows


def test_all_neighbours_of_some_seeds_match_full_inference(toy_graph):
    gi, model = _setup(toy_graph, 3)
    model.eval()
    seeds = torch.tensor([0, 5, 17, gi.num_users + 3, gi.num_nodes - 1])
    with torch.no_grad():
        rows = model.run_plan(build_sampled_plan(gi, seeds, 3, [-1]))
        assert torch.allclose(rows, model.embed(gi)[seeds], atol=1e-5)


def test_fanout_caps_neighbours_and_is_reproducible(toy_graph):
    gi, _ = _setup(toy_graph)
    crow, col = gi.adj_t.crow_indices(), gi.adj_t.col_indices()
    nodes = torch.arange(gi.num_nodes)
    dst, src = sample_neighbors(crow, col, nodes, 3, torch.Generator().manual_seed(1))
    deg = crow[1:] - crow[:-1]
    assert torch.equal(torch.bincount(dst, minlength=len(nodes)), deg.clamp(max=3))
    # every sampled neighbour is a real neighbour, with no repeats per node
    adjacency = set(zip(torch.repeat_interleave(nodes, deg).tolist(), col.tolist(), strict=True))
    pairs = list(zip(dst.tolist(), src.tolist(), strict=True))
    assert set(pairs) <= adjacency and len(set(pairs)) == len(pairs)
    again = sample_neighbors(crow, col, nodes, 3, torch.Generator().manual_seed(1))
    assert torch.equal(again[1], src)


def test_sampled_plan_trains(toy_graph):
    gi, model = _setup(toy_graph, 2)
    seeds = torch.arange(0, gi.num_nodes, 7)
    out = model.run_plan(build_sampled_plan(gi, seeds, 2, [4, 2], torch.Generator().manual_seed(0)))
    assert out.shape == (len(seeds), 8)
    out.square().sum().backward()
    assert all(p.grad is not None for name, p in model.named_parameters() if not name.endswith("bias"))


def test_layer_fanouts():
    assert layer_fanouts([5], 3) == [5, 5, 5]
    assert layer_fanouts([5, 2, 1, 1], 2) == [5, 2]
    with pytest.raises(ValueError, match="fanouts"):
        layer_fanouts([0], 2)
