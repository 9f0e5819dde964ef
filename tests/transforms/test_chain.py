import pytest
import torch

from bcemb.losses import multi_step_alignment
from bcemb.transforms import LinearTransform, TransformChain, TruncateTransform, build_transform


def _chain(dims, seed):
    torch.manual_seed(seed)
    # B_i maps dims[i] -> dims[i-1]
    return TransformChain([LinearTransform(dims[i], dims[i - 1]) for i in range(1, len(dims))])


def test_chain_equals_step_by_step(seed):
    chain = _chain([4, 6, 7, 9], seed)
    z = torch.randn(11, 9)
    for j in range(4):
        assert torch.allclose(chain.apply(z, j), chain.apply_stepwise(z, j), atol=1e-5)
        assert chain.apply(z, j).shape == (11, [4, 6, 7, 9][j])


def test_identity_at_latest_version(seed):
    chain = _chain([3, 5], seed)
    z = torch.randn(4, 5)
    assert torch.equal(chain.apply(z, 1), z)
    assert torch.equal(chain.matrix(1), torch.eye(5))


def test_composed_matrix_is_cached_and_explicit(seed):
    chain = _chain([2, 3, 4], seed)
    m = chain.matrix(0)
    expected = chain.transforms[0].weight @ chain.transforms[1].weight
    assert torch.allclose(m, expected)
    assert chain.matrix(0) is m  # cached


def test_unknown_version_and_bad_dims():
    chain = _chain([2, 3], 0)
    with pytest.raises(KeyError, match="unknown version 5"):
        chain.apply(torch.randn(1, 3), 5)
    with pytest.raises(ValueError, match="dimension"):
        chain.transforms[0](torch.randn(1, 7))
    with pytest.raises(ValueError, match="outputs dimension"):
        TransformChain([LinearTransform(3, 2), LinearTransform(5, 4)])


def test_truncate_keeps_first_coordinates():
    t = TruncateTransform(5, 3)
    z = torch.arange(10.0).reshape(2, 5)
    assert torch.equal(t(z), z[:, :3])
    assert torch.equal(z @ t.matrix().T, z[:, :3])
    assert not t.trainable
    with pytest.raises(ValueError):
        TruncateTransform(3, 5)


def test_residual_through_weights_equals_explicit_chain(seed):
    # The multi-step loss relies on W(a) - W(b) = W(a - b) for every older transform.
    chain = _chain([3, 4, 6], seed)
    b_k = LinearTransform(8, 6)
    z_k, z_prev = torch.randn(5, 8), torch.randn(5, 6)
    delta = b_k(z_k) - z_prev
    full = TransformChain([*chain.transforms, b_k])
    for j in range(3):
        via_residual = delta
        for t in reversed(chain.transforms[j:]):
            via_residual = t(via_residual)
        explicit = full.apply_stepwise(z_k, j) - chain.apply_stepwise(z_prev, j)
        assert torch.allclose(via_residual, explicit, atol=1e-5)
    assert multi_step_alignment(z_k, z_prev, b_k, chain.transforms) > 0


def test_build_transform_round_trip(seed):
    torch.manual_seed(seed)
    t = LinearTransform(4, 3)
    copy = build_transform(t.to_config())
    copy.load_state_dict(t.state_dict())
    assert torch.equal(copy.matrix(), t.matrix())
    with pytest.raises(ValueError, match="malformed"):
        build_transform({"kind": "linear"})
    with pytest.raises(KeyError, match="valid names"):
        build_transform({"kind": "nope", "in_dim": 2, "out_dim": 2})
