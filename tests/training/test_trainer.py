import pytest
import torch

from bcemb.evaluation.intended import RecallEvaluator
from bcemb.training import train_model
from cases import tiny_context


def test_trained_model_ranks_clearly_better_than_random(toy_graph, seed):
    data, ctx = tiny_context(toy_graph, seed=seed)
    v0 = data.version(0)
    objective, evaluator = ctx.task(0)
    torch.manual_seed(seed)
    model = ctx.new_model(2)
    random_recall = RecallEvaluator(v0, (20,), 20)(model)["recall@20"]
    ctx.config.epochs, ctx.config.eval_every = 12, 4
    out = train_model(model, objective, evaluator, ctx.config, generator=torch.Generator().manual_seed(seed))
    assert out.recall[20] == RecallEvaluator(v0, (10, 20, 50))(model)["recall@20"]  # best epoch restored
    # Chance level of Recall@20 over ~120 items is about 20/120.
    n_items = v0.train_graph.num_items
    assert out.recall[20] > 1.5 * 20 / n_items
    assert out.recall[20] > random_recall
    assert [row["epoch"] for row in out.curve] == [4, 8, 12]


def test_same_seed_reproduces_training_bit_for_bit(toy_graph):
    data, ctx = tiny_context(toy_graph)
    ctx.config.epochs = 3
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ctx.new_model(1)
        objective, evaluator = ctx.task(1)
        train_model(model, objective, evaluator, ctx.config, generator=torch.Generator().manual_seed(0))
        states.append(model.state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


class _Interrupt(Exception):
    pass


def test_interrupted_training_resumes_bit_for_bit_from_its_checkpoint(toy_graph, tmp_path):
    data, ctx = tiny_context(toy_graph)
    ctx.config.epochs, ctx.config.eval_every = 6, 2

    def run(ckpt, stop_after_eval=None):
        torch.manual_seed(0)
        model = ctx.new_model(1)
        objective, evaluator = ctx.task(1)
        calls = {"n": 0}

        def ev(m):
            calls["n"] += 1
            if stop_after_eval is not None and calls["n"] > stop_after_eval:
                raise _Interrupt  # like Ctrl-C during the third evaluation
            return evaluator(m)

        ev.primary = evaluator.primary
        out = train_model(model, objective, ev, ctx.config, generator=torch.Generator().manual_seed(0),
                          checkpoint=ckpt)
        return model, out

    ref_model, ref = run(None)
    ckpt = tmp_path / "ckpt.safetensors"
    try:
        run(ckpt, stop_after_eval=2)
    except _Interrupt:
        pass
    assert ckpt.is_file()
    model, out = run(ckpt)  # resumes after epoch 4
    def _untimed(curve):  # wall-clock seconds differ between any two runs
        return [{k: v for k, v in row.items() if k != "seconds"} for row in curve]

    assert _untimed(out.curve) == _untimed(ref.curve) and out.best_epoch == ref.best_epoch
    for key, value in ref_model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_a_corrupt_checkpoint_is_ignored(toy_graph, tmp_path):
    data, ctx = tiny_context(toy_graph)
    ctx.config.epochs, ctx.config.eval_every = 2, 2
    ckpt = tmp_path / "ckpt.safetensors"
    ckpt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    objective, evaluator = ctx.task(0)
    out = train_model(ctx.new_model(0), objective, evaluator, ctx.config,
                      generator=torch.Generator().manual_seed(0), checkpoint=ckpt)
    assert [r["epoch"] for r in out.curve] == [2]


class _ScriptedEvaluator:
    """Validation scores read from a list, one per evaluation."""

    primary = "recall@20"

    def __init__(self, scores):
        self.scores = list(scores)
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        return {"recall@20": self.scores[self.calls - 1]}


def test_early_stopping_is_the_same_for_joint_and_independent_methods(toy_graph):
    # Regression (issue 9): patience let independent methods stop at epoch 12-15 while joint
    # methods (warm-up 12) could not stop before 21. The same curve must stop at the same epoch.
    data, ctx = tiny_context(toy_graph)
    cfg = ctx.config
    cfg.epochs, cfg.eval_every, cfg.warmup_epochs, cfg.patience = 30, 3, 12, 3
    curve = [0.5, 0.4, 0.3, 0.3, 0.35, 0.3, 0.2, 0.2, 0.2, 0.2]  # best at epoch 3, never beaten
    runs = {}
    for name, warmup in (("independent", 0), ("joint", 12)):
        torch.manual_seed(0)
        model = ctx.new_model(1)
        objective, _ = ctx.task(1)
        out = train_model(model, objective, _ScriptedEvaluator(curve), cfg,
                          generator=torch.Generator().manual_seed(0), warmup_epochs=warmup)
        runs[name] = out
    assert runs["independent"].epochs_run == runs["joint"].epochs_run == 15
    assert runs["independent"].best_epoch == 3  # selection keeps the paper's rule
    assert runs["joint"].best_epoch == 15  # the first epoch after its warm-up


def test_trainer_applies_the_objectives_alignment_scale(toy_graph):
    from bcemb.losses import single_step_alignment
    from bcemb.training import Alignment
    from bcemb.transforms import LinearTransform

    data, ctx = tiny_context(toy_graph)
    ctx.config.epochs, ctx.config.eval_every = 1, 1
    aligns = []
    for scale in (1.0, 3.0):
        torch.manual_seed(0)
        model = ctx.new_model(1)
        objective, evaluator = ctx.task(1)
        step = objective.step

        def scaled(m, batch, *, with_rows=False, step=step, scale=scale):
            out = step(m, batch, with_rows=with_rows)
            out.align_scale = scale
            return out

        objective.step = scaled
        torch.manual_seed(1)
        target = torch.randn(data.version(1).train_graph.num_nodes, 8)
        align = Alignment(LinearTransform(12, 8), single_step_alignment, [], target, lam=0.0)
        out = train_model(model, objective, evaluator, ctx.config,
                          generator=torch.Generator().manual_seed(0), alignment=align)
        aligns.append(out.curve[-1]["align"])
    assert aligns[1] == pytest.approx(3 * aligns[0], rel=1e-6)


def _per_role_reference(model, v, batch, target, b_k, older, lam, weight_decay):
    """The reference's loss written out: BPR + lam x sum over roles of the multi-step MSEs."""
    import torch.nn.functional as F

    from bcemb.losses import bpr_loss

    z_all = torch.cat(model(v.train_graph))
    user, pos, neg = batch
    n_users = v.train_graph.num_users
    roles = [user, pos + n_users, neg + n_users]
    align = 0.0
    for rows in roles:
        approx, t = b_k(z_all[rows]), target[rows]
        terms = [F.mse_loss(approx, t)]
        for link in reversed(older):  # B_{k-1} first, then down to B_1
            approx, t = link(approx), link(t)
            terms.append(F.mse_loss(approx, t))
        align = align + sum(terms) / len(terms)
    bpr = bpr_loss(*(z_all[r] for r in roles), weight_decay=weight_decay)
    return bpr + lam * align, align


def test_train_step_alignment_equals_the_per_role_reference(toy_graph, seed):
    # The trainer's BC-Aligner term (distinct rows, prepared factor, fused GEMM) gives the
    # reference's loss and gradients: the sum of three per-role multi-step MSEs, times lam.
    import copy

    from bcemb.losses import multi_step_alignment
    from bcemb.training import Alignment
    from bcemb.training.trainer import train_step
    from bcemb.transforms import LinearTransform

    data, ctx = tiny_context(toy_graph, seed=seed)
    v = data.version(2)
    objective, _ = ctx.task(2)
    torch.manual_seed(seed)
    model = ctx.new_model(2)
    model.train()
    reference_model = copy.deepcopy(model)
    b_k = LinearTransform(16, 12)
    older = [LinearTransform(10, 8).frozen_copy(), LinearTransform(12, 10).frozen_copy()]  # B_1, B_2
    target = torch.randn(v.train_graph.num_nodes, 12)
    batch = next(iter(objective.batches(96, torch.Generator().manual_seed(seed))))
    lam = 16.0
    alignment = Alignment(b_k, multi_step_alignment, older, target, lam)
    params = [*model.parameters(), b_k.weight]
    loss, align = train_step(model, objective, batch, torch.optim.SGD(params, lr=0.0), alignment)

    ref_b_k = copy.deepcopy(b_k)
    ref_loss, ref_align = _per_role_reference(
        reference_model, v, batch, target, ref_b_k, older, lam, objective.weight_decay
    )
    ref_loss.backward()
    assert loss == pytest.approx(float(ref_loss.detach()), rel=1e-5)
    assert align == pytest.approx(float(ref_align.detach()), rel=1e-5)
    ref_params = [*reference_model.parameters(), ref_b_k.weight]
    for p, q in zip(params, ref_params, strict=True):
        # atol: gradients that are 0 in exact arithmetic (biases before BatchNorm) are ~1e-6
        assert torch.allclose(p.grad, q.grad, atol=5e-6, rtol=1e-4)


def test_alignment_redoes_its_prepared_parts_when_targets_change(seed):
    from bcemb.losses import multi_step_alignment
    from bcemb.training import Alignment
    from bcemb.transforms import LinearTransform

    torch.manual_seed(seed)
    older = [LinearTransform(6, 4).frozen_copy()]
    alignment = Alignment(LinearTransform(8, 6), multi_step_alignment, older, torch.randn(10, 6), 1.0)
    z, ids = torch.randn(3, 8), torch.tensor([1, 4, 9])
    before = alignment.batch_loss(z, ids)
    alignment.target.mul_(2.0)  # in place: the cached targets x factor are stale
    after = alignment.batch_loss(z, ids)
    expected = multi_step_alignment(z, alignment.target[ids], alignment.transform, older)
    assert not torch.allclose(before, after) and torch.allclose(after, expected, atol=1e-6)
