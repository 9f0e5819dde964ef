"""The transform families: interface, round trips, closed forms and joint training."""

import pytest
import torch

from bcemb.losses import multi_step_alignment, single_step_alignment
from bcemb.transforms import (
    TRANSFORMS,
    LinearTransform,
    LowRankTransform,
    OrthogonalTransform,
    ResidualMLPTransform,
    TransformChain,
    build_transform,
)
from bcemb.transforms.fit import fit_transform

FAMILIES = ["linear", "orthogonal", "low-rank", "mlp", "truncate"]


def _pair(seed, n=400, d_in=12, d_out=8, noise=0.01):
    g = torch.Generator().manual_seed(seed)
    z_k = torch.randn(n, d_in, generator=g)
    q, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=g))
    w = q[:d_out]  # a semi-orthogonal [d_out, d_in]
    return z_k, z_k @ w.T + noise * torch.randn(n, d_out, generator=g), w


@pytest.mark.parametrize("kind", FAMILIES)
@pytest.mark.parametrize("dims", [(12, 8), (8, 12), (6, 6)])
def test_family_interface_and_round_trip(kind, dims, seed):
    d_in, d_out = dims
    if kind == "truncate" and d_out > d_in:
        pytest.skip("truncation cannot add coordinates")
    torch.manual_seed(seed)
    t = TRANSFORMS.get(kind)(d_in, d_out)
    z = torch.randn(5, d_in)
    out = t(z)
    assert out.shape == (5, d_out)
    assert (t.in_dim, t.out_dim) == (d_in, d_out)
    copy = build_transform(t.to_config())
    copy.load_state_dict(t.state_dict())
    assert torch.allclose(copy(z), out, atol=1e-6)
    if t.linear:
        assert torch.allclose(z @ t.matrix().T, out, atol=1e-5)
    else:
        with pytest.raises(TypeError, match="non-linear"):
            t.matrix()
    frozen = t.frozen_copy()
    assert not frozen.trainable and torch.allclose(frozen(z), out, atol=1e-6)


def test_hyperparameters_travel_in_the_config():
    t = build_transform(LowRankTransform(10, 7, rank=3).to_config())
    assert isinstance(t, LowRankTransform) and t.rank == 3
    m = build_transform(ResidualMLPTransform(10, 7, hidden=5).to_config())
    assert isinstance(m, ResidualMLPTransform) and m.hidden == 5
    with pytest.raises(ValueError, match="malformed"):
        build_transform({"kind": "low-rank", "in_dim": 4, "out_dim": 3, "colour": 1})


@pytest.mark.parametrize("dims", [(12, 8), (8, 12)])
def test_procrustes_recovers_a_semi_orthogonal_map(dims, seed):
    d_in, d_out = dims
    g = torch.Generator().manual_seed(seed)
    z_k = torch.randn(300, d_in, generator=g)
    q, _ = torch.linalg.qr(torch.randn(max(dims), max(dims), generator=g))
    w = q[:d_out, :d_in]
    w = w if d_out <= d_in else q[:d_out, :d_in]  # columns orthonormal when d_out > d_in
    z_prev = z_k @ w.T + 0.01 * torch.randn(300, d_out, generator=g)
    t = OrthogonalTransform(d_in, d_out)
    t.fit_closed_form(z_k, z_prev)
    m = t.matrix().detach()
    eye = torch.eye(min(dims))
    gram = m @ m.T if d_out <= d_in else m.T @ m
    assert torch.allclose(gram, eye, atol=1e-5)
    assert torch.allclose(m, w, atol=0.01)


def test_procrustes_beats_random_orthogonal_and_stays_orthogonal_in_training(seed):
    z_k, z_prev, _ = _pair(seed)
    torch.manual_seed(seed)
    t = OrthogonalTransform(12, 8)
    before = single_step_alignment(z_k, z_prev, t).item()
    opt = torch.optim.Adam(t.parameters(), lr=0.05)
    for _ in range(150):
        loss = single_step_alignment(z_k, z_prev, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m = t.matrix().detach()
    assert torch.allclose(m @ m.T, torch.eye(8), atol=1e-4)  # still semi-orthogonal
    assert loss.item() < 0.2 * before


def test_linear_closed_form_is_least_squares(seed):
    z_k, z_prev, w = _pair(seed, noise=0.0)
    t = LinearTransform(12, 8)
    t.fit_closed_form(z_k, z_prev)
    assert torch.allclose(t.matrix().detach(), w, atol=1e-4)


def test_low_rank_closed_form_recovers_a_low_rank_correction(seed):
    g = torch.Generator().manual_seed(seed)
    z_k = torch.randn(500, 10, generator=g)
    u, v = torch.randn(6, 2, generator=g), torch.randn(2, 10, generator=g)
    truth = torch.eye(6, 10) + u @ v
    z_prev = z_k @ truth.T
    t = LowRankTransform(10, 6, rank=2)
    assert torch.allclose(t.matrix(), torch.eye(6, 10))  # starts at the truncation
    t.fit_closed_form(z_k, z_prev)
    assert torch.allclose(t.matrix().detach(), truth, atol=1e-3)
    # a lower rank than the truth cannot fit it exactly, but helps
    t1 = LowRankTransform(10, 6, rank=1)
    t1.fit_closed_form(z_k, z_prev)
    err1 = single_step_alignment(z_k, z_prev, t1).item()
    err0 = single_step_alignment(z_k, z_prev, LowRankTransform(10, 6, rank=1)).item()
    assert 1e-4 < err1 < err0


def test_mlp_fits_a_nonlinear_warp_better_than_linear(seed):
    g = torch.Generator().manual_seed(seed)
    z_k = torch.randn(3000, 6, generator=g)
    z_prev = torch.tanh(2 * z_k[:, :4]) + 0.3 * z_k[:, 4:5] ** 2
    x_te = torch.randn(500, 6, generator=g)
    y_te = torch.tanh(2 * x_te[:, :4]) + 0.3 * x_te[:, 4:5] ** 2
    lin = LinearTransform(6, 4)
    fit_transform(lin, z_k, z_prev)
    torch.manual_seed(seed)
    mlp = ResidualMLPTransform(6, 4, hidden=64)
    report = fit_transform(mlp, z_k, z_prev, steps=3000, lr=3e-3, seed=seed)
    assert report.method == "adam" and report.steps > 0
    err_lin = single_step_alignment(x_te, y_te, lin).item()
    err_mlp = single_step_alignment(x_te, y_te, mlp).item()
    assert err_mlp < 0.5 * err_lin


def test_chain_with_a_nonlinear_link(seed):
    torch.manual_seed(seed)
    links = [LinearTransform(4, 3), ResidualMLPTransform(5, 4, hidden=6), LinearTransform(7, 5),
             OrthogonalTransform(9, 7)]
    with torch.no_grad():
        links[1].down.weight.normal_()  # make the MLP really non-linear
    chain = TransformChain(links)
    assert not chain.linear and chain.linear_to(2) and not chain.linear_to(1)
    plan = chain.plan(0)
    assert [isinstance(s, torch.Tensor) for s in plan] == [True, False, True]
    assert plan[0].shape == (5, 9)  # B_3 o B_4 composed into one matrix
    z = torch.randn(10, 9)
    for j in range(5):
        assert torch.allclose(chain.apply(z, j), chain.apply_stepwise(z, j), atol=1e-5)
    with pytest.raises(TypeError, match="non-linear"):
        chain.matrix(0)
    assert chain.matrix(2).shape == (5, 9)


def test_multi_step_loss_with_a_nonlinear_older_link(seed):
    torch.manual_seed(seed)
    older = [LinearTransform(3, 2), ResidualMLPTransform(4, 3, hidden=5)]
    with torch.no_grad():
        older[1].down.weight.normal_()
    b_k = LinearTransform(6, 4)
    z_k, z_prev = torch.randn(8, 6), torch.randn(8, 4)
    full = TransformChain([*older, b_k])
    old = TransformChain(older)
    expected = sum(
        (full.apply_stepwise(z_k, j) - old.apply_stepwise(z_prev, j)).pow(2).mean(1) for j in range(3)
    ).mean() / 3
    got = multi_step_alignment(z_k, z_prev, b_k, [t.frozen_copy() for t in older])
    assert torch.allclose(got, expected, atol=1e-5)
    got.backward()
    assert b_k.weight.grad is not None
