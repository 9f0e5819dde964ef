import pytest
import torch

from bcemb.evaluation.intended import RecallEvaluator
import torch.nn.functional as F

from bcemb.losses import bpr_loss, bpr_loss_rows, multi_step_alignment, single_step_alignment
from bcemb.transforms import LinearTransform
from bcemb.training import train_model
from bcemb.training.recommender import SAMPLED_ABOVE_EDGES, BPRObjective, resolve_mode
from cases import tiny_context


def test_bpr_on_distinct_rows_equals_bpr_on_the_batch(seed):
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randn(10, 4, generator=gen)
    inverse = torch.randint(0, 10, (3 * 6,), generator=gen)
    counts = torch.bincount(inverse, minlength=10)
    u, p, n = rows[inverse].view(3, 6, 4).unbind(0)
    assert torch.allclose(bpr_loss_rows(rows, inverse, counts, 6, weight_decay=0.3), bpr_loss(u, p, n, weight_decay=0.3))


def test_auto_mode_picks_by_graph_size():
    assert resolve_mode("auto", SAMPLED_ABOVE_EDGES) == "full"
    assert resolve_mode("auto", SAMPLED_ABOVE_EDGES + 1) == "sampled"
    assert resolve_mode("sampled", 10) == "sampled"
    with pytest.raises(ValueError, match="train mode"):
        resolve_mode("minibatch", 10)


def test_sampled_mode_trains_in_the_same_loop(toy_graph, seed):
    data, ctx = tiny_context(toy_graph, seed=seed)
    v0 = data.version(0)
    ctx.config.epochs, ctx.config.eval_every = 12, 4
    objective = BPRObjective(v0, mode="sampled", fanouts=(5, 3))
    evaluator = RecallEvaluator(v0, (20,), 20)
    torch.manual_seed(seed)
    model = ctx.new_model(2)
    random_recall = evaluator(model)["recall@20"]
    out = train_model(model, objective, evaluator, ctx.config, generator=torch.Generator().manual_seed(seed))
    assert out.recall[20] > 1.5 * 20 / v0.train_graph.num_items
    assert out.recall[20] > random_recall


def test_sampled_mode_rows_and_weights_for_the_alignment(toy_graph):
    data, _ = tiny_context(toy_graph)
    v0 = data.version(0)
    from bcemb.models import SageConfig, SageEncoder

    model = SageEncoder(SageConfig(2, 8, data.feature_sizes))
    objective = BPRObjective(v0, mode="sampled", fanouts=(4,))
    batch = next(iter(objective.batches(32, torch.Generator().manual_seed(0))))
    out = objective.step(model, batch, with_rows=True)
    user, pos, neg = batch
    nodes = torch.cat([user, pos + v0.train_graph.num_users, neg + v0.train_graph.num_users])
    assert torch.equal(out.ids, torch.unique(nodes)) and out.weight.sum() == len(nodes)
    assert out.z.shape == (len(out.ids), 8) and out.loss.requires_grad


def test_alignment_term_has_the_reference_scale(toy_graph, seed):
    # Regression (issue 9): the reference sums one MSE per node role (users, positive items,
    # negative items). A plain mean over the batch's 3B rows is a third of that and made
    # lambda 16 act as the reference's 16/3.
    data, ctx = tiny_context(toy_graph, seed=seed)
    v = data.version(1)
    objective = BPRObjective(v)
    torch.manual_seed(seed)
    model = ctx.new_model(1)
    batch = next(iter(objective.batches(64, torch.Generator().manual_seed(seed))))
    out = objective.step(model, batch, with_rows=True)
    target = torch.randn(v.train_graph.num_nodes, 8)
    b_k, b_prev = LinearTransform(12, 8), [LinearTransform(8, 5)]
    z_all = torch.cat(model(v.train_graph))
    user, pos, neg = batch
    n_users = v.train_graph.num_users
    roles = (user, pos + n_users, neg + n_users)
    for loss, history in ((single_step_alignment, []), (multi_step_alignment, b_prev)):
        reference = sum(loss(z_all[r], target[r], b_k, history) for r in roles)
        got = out.align_scale * loss(out.z, target[out.ids], b_k, history, out.weight)
        assert torch.allclose(got, reference, atol=1e-5)
    # the single-step term is literally MSE(users) + MSE(positives) + MSE(negatives)
    mse = sum(F.mse_loss(b_k(z_all[r]), target[r]) for r in roles)
    got = out.align_scale * single_step_alignment(out.z, target[out.ids], b_k, [], out.weight)
    assert torch.allclose(got, mse, atol=1e-5)
