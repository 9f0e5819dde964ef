import pytest
import torch
import torch.nn.functional as F

from bcemb.losses import bpr_loss, multi_step_alignment, prepare_alignment, single_step_alignment
from bcemb.transforms import LinearTransform
from bcemb.transforms.mlp import ResidualMLPTransform


def test_single_step_is_mse(seed):
    torch.manual_seed(seed)
    b = LinearTransform(6, 4)
    z_k, z_prev = torch.randn(10, 6), torch.randn(10, 4)
    assert torch.allclose(single_step_alignment(z_k, z_prev, b), ((z_k @ b.weight.T - z_prev) ** 2).mean())


def test_multi_step_equals_explicit_sum(seed):
    torch.manual_seed(seed)
    dims = [3, 5, 4, 6]  # D_0..D_3
    prev = [LinearTransform(dims[i], dims[i - 1]) for i in range(1, 3)]  # B_1, B_2
    b_k = LinearTransform(dims[3], dims[2])  # B_3
    z_k, z_prev = torch.randn(9, dims[3]), torch.randn(9, dims[2])
    k = 3
    delta = z_k @ b_k.weight.T - z_prev
    terms = []
    for j in range(k):  # j = 0..k-1: W_{j+1} ... W_{k-1} delta
        prod = torch.eye(dims[2])
        for i in range(k - 1, j, -1):  # W_{k-1} first applied
            prod = prev[i - 1].weight @ prod
        terms.append(((delta @ prod.T) ** 2).mean())
    expected = sum(terms) / k
    assert torch.allclose(multi_step_alignment(z_k, z_prev, b_k, prev), expected, atol=1e-6)


def test_multi_step_with_no_history_is_single_step(seed):
    torch.manual_seed(seed)
    b = LinearTransform(5, 3)
    z_k, z_prev = torch.randn(4, 5), torch.randn(4, 3)
    assert torch.allclose(multi_step_alignment(z_k, z_prev, b, []), single_step_alignment(z_k, z_prev, b))


def test_bpr_loss_matches_formula(seed):
    torch.manual_seed(seed)
    u, p, n = torch.randn(8, 4), torch.randn(8, 4), torch.randn(8, 4)
    expected = F.softplus((u * n).sum(1) - (u * p).sum(1)).mean() + 0.01 * (
        u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()
    ) / 16
    assert torch.allclose(bpr_loss(u, p, n, weight_decay=0.01), expected)
    # A perfect ranking has a lower loss than a reversed one.
    assert bpr_loss(u, u, -u, weight_decay=0) < bpr_loss(u, -u, u, weight_decay=0)


def test_weighted_distinct_rows_equal_repeated_rows(seed):
    # The trainer evaluates the alignment on distinct batch nodes weighted by multiplicity.
    torch.manual_seed(seed)
    prev = [LinearTransform(5, 3)]
    b = LinearTransform(6, 5)
    z_k, z_prev = torch.randn(4, 6), torch.randn(4, 5)
    rows = torch.tensor([0, 0, 1, 3, 3, 3, 2])
    uniq, counts = torch.unique(rows, return_counts=True)
    for loss in (single_step_alignment, multi_step_alignment):
        full = loss(z_k[rows], z_prev[rows], b, prev)
        weighted = loss(z_k[uniq], z_prev[uniq], b, prev, counts.float())
        assert torch.allclose(full, weighted, atol=1e-6)


@pytest.mark.parametrize("loss", [single_step_alignment, multi_step_alignment])
@pytest.mark.parametrize("history", [0, 2])
def test_prepared_alignment_equals_the_loss(seed, loss, history):
    # The trainer's fast path (factor and targets x factor computed once, one fused GEMM)
    # gives the loss function's value and gradients.
    torch.manual_seed(seed)
    dims = [5, 3, 4, 6][: history + 2]
    prev = [LinearTransform(dims[i], dims[i - 1]).frozen_copy() for i in range(1, len(dims) - 1)]
    b_k = LinearTransform(dims[-1], dims[-2])
    target = torch.randn(11, dims[-2])
    ids = torch.tensor([0, 2, 3, 7, 10])
    weight = torch.tensor([1.0, 3.0, 2.0, 1.0, 5.0])
    prepared = prepare_alignment(loss, target, b_k, prev)
    assert prepared is not None
    for w in (None, weight):
        z = torch.randn(5, dims[-1], requires_grad=True)
        expected = loss(z, target[ids], b_k, prev, w)
        want = torch.autograd.grad(expected, (z, b_k.weight))
        got_value = prepared(z, ids, b_k, w)
        got = torch.autograd.grad(got_value, (z, b_k.weight))
        assert torch.allclose(got_value, expected, atol=1e-6, rtol=1e-5)
        for g, e in zip(got, want, strict=True):
            assert torch.allclose(g, e, atol=1e-6, rtol=1e-5)


def test_prepared_alignment_declines_non_linear_links():
    mlp = ResidualMLPTransform(4, 3, hidden=5)
    target = torch.randn(6, 3)
    assert prepare_alignment(multi_step_alignment, target, mlp) is None
    assert prepare_alignment(multi_step_alignment, torch.randn(6, 2), LinearTransform(4, 3), [mlp.frozen_copy()]) is None
    assert prepare_alignment(lambda *a: a, target, LinearTransform(4, 3)) is None  # unknown loss
