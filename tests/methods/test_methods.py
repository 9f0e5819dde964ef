import pytest
import torch

from bcemb.methods import JOINT_METHODS, METHODS, Method, build_method
from bcemb.registry import UnknownNameError
from bcemb.training import Alignment, train_model
from bcemb.losses import multi_step_alignment, single_step_alignment
from bcemb.methods.parts import Independent, JointFit, PostHocFit
from bcemb.transforms import LinearTransform
from cases import tiny_context

S, M = single_step_alignment, multi_step_alignment
EXPECTED = {
    "fix-m0": (None, Independent), "finetune-m0": (None, Independent), "non-bc": (None, Independent),
    "post-lin-sloss": (S, PostHocFit), "post-lin-mloss": (M, PostHocFit),
    "joint-notrans": (S, JointFit), "joint-lin-sloss": (S, JointFit),
    "bc-aligner": (M, JointFit),
}
# Other transform families (issue 10 point 3), registered beside the paper's eight.
FAMILIES = {
    "bc-aligner-orth": (M, JointFit), "bc-aligner-lowrank": (M, JointFit),
    "bc-aligner-mlp": (M, JointFit), "post-procrustes": (S, PostHocFit),
}


def test_registry_has_the_eight_methods_with_their_declarations():
    from bcemb.methods import paper_methods

    assert set(METHODS.names()) == set(EXPECTED) | set(FAMILIES)
    assert set(paper_methods()) == set(EXPECTED)
    for name, (alignment, fitting) in {**EXPECTED, **FAMILIES}.items():
        cls = METHODS.get(name)
        assert issubclass(cls, Method) and cls is not Method
        assert cls.alignment is alignment and type(cls.fitting) is fitting
        assert cls.label and cls.order > 0  # shown once, from the class
    assert set(JOINT_METHODS) == {"joint-notrans", "joint-lin-sloss", "bc-aligner"} | {
        n for n, (_, f) in FAMILIES.items() if f is JointFit
    }
    orders = [METHODS.get(n).order for n in METHODS.names()]
    assert len(set(orders)) == len(orders)


def test_registry_synonyms_and_errors():
    assert METHODS.canonical("Joint_Linear_MLoss") == "bc-aligner"
    assert METHODS.canonical("BC_ALIGNER") == "bc-aligner"
    with pytest.raises(UnknownNameError, match="valid names: fix-m0"):
        METHODS.get("bc-align")


@pytest.mark.parametrize("name", sorted(EXPECTED | FAMILIES))
def test_every_method_trains_versions_end_to_end(name, toy_graph, tmp_path):
    data, ctx = tiny_context(toy_graph, tmp_path / "cache")
    method = build_method(name, lam=4.0)
    history = []
    for k in range(3):
        art = method.fit_version(k, ctx, history)
        history.append(art)
        assert 0.0 <= art.recall[50] <= 1.0
        user_emb, item_emb = art.model(data.version(k).embed_graph)
        assert user_emb.shape[0] == data.version(k).embed_graph.num_users
        if k > 0:
            assert art.transform is not None
            assert art.transform.in_dim == art.model.dim
            assert art.transform.out_dim == history[k - 1].model.dim
            assert art.transform(user_emb).shape[1] == history[k - 1].model.dim
    # The composed chain maps the latest embeddings to ver-0 dimension.
    from bcemb.transforms import TransformChain

    chain = TransformChain([a.transform for a in history[1:]])
    assert chain.apply(user_emb, 0).shape == (user_emb.shape[0], history[0].model.dim)
    if name == "fix-m0":
        assert all(a.model is history[0].model for a in history)
    if name == "finetune-m0":
        assert all(a.model.dim == history[0].model.dim for a in history)


def test_version_zero_is_shared_through_the_cache(toy_graph, tmp_path):
    _, ctx = tiny_context(toy_graph, tmp_path / "cache")
    a = build_method("non-bc").fit_version(0, ctx, [])
    b = build_method("bc-aligner").fit_version(0, ctx, [])
    assert b.reused and not a.reused
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_training_step_changes_only_current_model_and_transform(toy_graph, tmp_path, seed):
    data, ctx = tiny_context(toy_graph, tmp_path / "cache", seed=seed)
    method = build_method("bc-aligner")
    history = [method.fit_version(0, ctx, [])]
    history.append(method.fit_version(1, ctx, history))
    frozen_models = [{k: v.clone() for k, v in a.model.state_dict().items()} for a in history]
    frozen_b1 = history[1].transform.weight.detach().clone()
    objective, evaluator = ctx.task(2)
    model = ctx.new_model(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    b2 = LinearTransform(model.dim, history[1].model.dim)
    b2_before = b2.weight.detach().clone()
    target = objective.embed(history[1].model)
    align = Alignment(b2, multi_step_alignment, [history[1].transform], target, 16.0)
    ctx.config.epochs = 1
    train_model(model, objective, evaluator, ctx.config, generator=torch.Generator().manual_seed(seed), alignment=align)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(b2.weight, b2_before)
    for a, frozen in zip(history, frozen_models, strict=True):
        for k, v in a.model.state_dict().items():
            assert torch.equal(v, frozen[k]), k
    assert torch.equal(history[1].transform.weight, frozen_b1)


def test_bad_arguments(toy_graph, tmp_path):
    _, ctx = tiny_context(toy_graph, tmp_path / "cache")
    with pytest.raises(ValueError, match="needs the 1 earlier"):
        build_method("non-bc").fit_version(1, ctx, [])
    with pytest.raises(ValueError, match="lam"):
        build_method("bc-aligner", lam=-1).fit_version(0, ctx, [])


def test_model_cache_refuses_another_configuration(tmp_path):
    from bcemb.methods import ModelCache

    ModelCache(tmp_path / "cache", {"seed": 0, "sizes": [[1, 8]]})
    ModelCache(tmp_path / "cache", {"seed": 0, "sizes": [[1, 8]]})  # same: reused
    with pytest.raises(ValueError, match="differs in: seed"):
        ModelCache(tmp_path / "cache", {"seed": 1, "sizes": [[1, 8]]})


def test_method_info_is_declared_once_on_the_class():
    from bcemb.methods import KEEP_ALL, method_info, method_order

    from bcemb.methods import paper_methods

    assert method_order()[0] == "fix-m0" and paper_methods()[-1] == "bc-aligner"
    assert method_info("bc-aligner").label == "BC-Aligner"
    assert method_info(KEEP_ALL).label == "Keep-All"


def test_family_methods_learn_their_transform_family(toy_graph, tmp_path):
    from bcemb.transforms import OrthogonalTransform, ResidualMLPTransform

    _, ctx = tiny_context(toy_graph, tmp_path / "cache")
    history = []
    for k in range(2):
        history.append(build_method("post-procrustes").fit_version(k, ctx, history))
    q = history[1].transform.matrix()
    assert isinstance(history[1].transform, OrthogonalTransform)
    assert torch.allclose(q @ q.T, torch.eye(q.shape[0]), atol=1e-5)  # D_0 = 8 < D_1 = 12
    mlp = build_method("bc-aligner-mlp").fit_version(1, ctx, history[:1])
    assert isinstance(mlp.transform, ResidualMLPTransform) and not mlp.transform.linear
    assert mlp.transform.down.weight.abs().sum() > 0  # the non-linear part was trained
