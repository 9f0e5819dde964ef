import numpy as np
import pytest
import torch

from bcemb.models import GraphInput, SageConfig, SageEncoder
from bcemb.models.sampled_plan import _floyd_offsets, build_sampled_plan, layer_fanouts, sample_neighbors


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


def test_sampled_neighbours_are_grouped_by_node_in_order(toy_graph, seed):
    gi, _ = _setup(toy_graph)
    crow, col = gi.adj_t.crow_indices(), gi.adj_t.col_indices()
    nodes = torch.randperm(gi.num_nodes, generator=torch.Generator().manual_seed(seed))[:40]
    dst, src = sample_neighbors(crow, col, nodes, 2, torch.Generator().manual_seed(seed))
    assert torch.all(dst[1:] >= dst[:-1])
    for pos, node in enumerate(nodes.tolist()):
        row = set(col[crow[node] : crow[node + 1]].tolist())
        assert set(src[dst == pos].tolist()) <= row


def test_different_seeds_draw_different_neighbours(toy_graph):
    gi, _ = _setup(toy_graph)
    crow, col = gi.adj_t.crow_indices(), gi.adj_t.col_indices()
    nodes = torch.arange(gi.num_nodes)
    a = sample_neighbors(crow, col, nodes, 2, torch.Generator().manual_seed(1))[1]
    b = sample_neighbors(crow, col, nodes, 2, torch.Generator().manual_seed(2))[1]
    assert not torch.equal(a, b)


def test_floyd_offsets_are_distinct_in_range_and_uniform(seed):
    deg = torch.tensor([3, 5, 12]).repeat(4000)
    picks = _floyd_offsets(deg, 3, torch.Generator().manual_seed(seed))
    assert torch.all((picks >= 0) & (picks < deg.unsqueeze(1)))
    assert torch.all(picks.sort(1).values.diff(dim=1) > 0)  # distinct within a row
    for d in (3, 5, 12):
        freq = torch.bincount(picks[deg == d].reshape(-1), minlength=d).float() / 4000
        # each offset is kept with probability 3 / d; 4000 draws give a standard error < 0.008
        assert torch.allclose(freq, torch.full((d,), 3 / d), atol=0.04)


def test_same_generator_seed_same_plan(toy_graph, seed):
    gi, model = _setup(toy_graph, 3)
    seeds = torch.arange(0, gi.num_nodes, 5)
    outs = [model.run_plan(build_sampled_plan(gi, seeds, 3, [3, 2], torch.Generator().manual_seed(seed))) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])


def test_items_of_one_type_repeat_columns_and_still_match_full(toy_graph, seed):
    # One feature-less type for all items: a user's sampled items all hit the same input row.
    torch.manual_seed(seed)
    gi, model = _setup(toy_graph, 2)
    gi = type(gi)(gi.num_users, gi.num_items, gi.adj_t, {})
    plan = build_sampled_plan(gi, torch.arange(gi.num_nodes), 2, [-1])
    assert plan.num_input_items <= 2  # items with and without neighbours
    assert torch.allclose(model.run_plan(plan), model.embed(gi), atol=1e-4)


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
