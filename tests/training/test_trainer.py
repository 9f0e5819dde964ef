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
    assert out.curve == ref.curve and out.best_epoch == ref.best_epoch
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
