"""Tests of the BPR sampler: negatives, determinism, user-uniform draws, epoch size."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from bcemb.data.sampling import BPRSampler


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_edges(seed: int, n_users: int = 40, n_items: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs; some users hold almost every item."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        deg = int(rng.integers(1, n_items)) if u % 5 else n_items - 1  # dense users
        for i in rng.choice(n_items, deg, replace=False):
            users.append(u)
            items.append(int(i))
    order = rng.permutation(len(users))
    return np.asarray(users)[order], np.asarray(items)[order]


def _epoch(sampler: BPRSampler, batch: int) -> list[tuple[torch.Tensor, ...]]:
    return list(sampler.epoch(batch))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_negatives_are_never_positives(seed: int) -> None:
    users, items = _random_edges(seed)
    n_items = 30
    positives: dict[int, set[int]] = defaultdict(set)
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        positives[u].add(i)
    sampler = BPRSampler(users, items, n_items, generator=_gen(seed))
    draws = 0
    for _ in range(10):
        for u, p, n in sampler.epoch(256):
            for uu, pp, nn in zip(u.tolist(), p.tolist(), n.tolist(), strict=True):
                assert pp in positives[uu]  # (user, pos) is a training edge
                assert nn not in positives[uu]
                assert 0 <= nn < n_items
                draws += 1
    assert draws == 10 * len(users)
    # negatives() directly, on the densest users many times over
    dense = torch.tensor([u for u in positives if len(positives[u]) == n_items - 1] * 200)
    neg = sampler.negatives(dense)
    for uu, nn in zip(dense.tolist(), neg.tolist(), strict=True):
        assert nn not in positives[uu]


def test_negatives_uniform_among_non_positives() -> None:
    # user 0 holds items 0..4 of 10: negatives are uniform over 5..9
    sampler = BPRSampler(np.zeros(5, dtype=np.int64), np.arange(5), 10, generator=_gen(0))
    neg = sampler.negatives(torch.zeros(20_000, dtype=torch.long))
    counts = Counter(neg.tolist())
    assert set(counts) == {5, 6, 7, 8, 9}
    for c in counts.values():
        assert abs(c - 4000) < 400  # ~7 sigma


def test_is_positive() -> None:
    users, items = _random_edges(3)
    sampler = BPRSampler(users, items, 30, generator=_gen(0))
    pairs = {(u, i) for u, i in zip(users.tolist(), items.tolist(), strict=True)}
    uu = torch.arange(40).repeat_interleave(30)
    ii = torch.arange(30).repeat(40)
    got = sampler.is_positive(uu, ii).tolist()
    assert got == [(u, i) in pairs for u, i in zip(uu.tolist(), ii.tolist(), strict=True)]


def test_deterministic_for_a_generator_seed() -> None:
    users, items = _random_edges(0)
    a = _epoch(BPRSampler(users, items, 30, generator=_gen(7)), 100)
    b = _epoch(BPRSampler(users, items, 30, generator=_gen(7)), 100)
    c = _epoch(BPRSampler(users, items, 30, generator=_gen(8)), 100)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for tx, ty in zip(x, y, strict=True):
            assert torch.equal(tx, ty)
    flat = lambda batches: torch.cat([torch.stack(t) for t in batches], dim=1)  # noqa: E731
    assert not torch.equal(flat(a), flat(c))
    # the same sampler draws a fresh epoch next time
    s = BPRSampler(users, items, 30, generator=_gen(7))
    first, second = flat(_epoch(s, 100)), flat(_epoch(s, 100))
    assert torch.equal(first, flat(a)) and not torch.equal(first, second)


def test_global_rng_untouched() -> None:
    users, items = _random_edges(0)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    _epoch(BPRSampler(users, items, 30, generator=_gen(1)), 64)
    assert torch.equal(torch.rand(3), before)


@pytest.mark.parametrize("batch", [1, 7, 100, 10_000])
def test_epoch_size_equals_number_of_edges(batch: int) -> None:
    users, items = _random_edges(1)
    sampler = BPRSampler(users, items, 30, generator=_gen(0))
    assert len(sampler) == len(users)
    batches = _epoch(sampler, batch)
    sizes = [b[0].shape[0] for b in batches]
    assert sum(sizes) == len(users)
    assert all(s == batch for s in sizes[:-1]) and 0 < sizes[-1] <= batch
    for u, p, n in batches:
        assert u.shape == p.shape == n.shape
        assert u.dtype == p.dtype == n.dtype == torch.long


def test_users_drawn_uniformly_not_edges() -> None:
    # user 0 has 300 edges, users 1..9 have 3 each: 327 edges. Drawing edges uniformly would
    # give user 0 about 92 % of the samples; drawing users uniformly gives each about 10 %.
    users = np.array([0] * 300 + [u for u in range(1, 10) for _ in range(3)])
    items = np.array(list(range(300)) + [i for _ in range(1, 10) for i in range(3)])
    sampler = BPRSampler(users, items, 400, generator=_gen(0))
    counts: Counter[int] = Counter()
    pos_of_0: Counter[int] = Counter()
    total = 0
    for _ in range(30):
        for u, p, _ in sampler.epoch(1000):
            counts.update(u.tolist())
            pos_of_0.update(p[u == 0].tolist())
            total += u.shape[0]
    assert total == 30 * 327
    expected = total / 10
    for u in range(10):
        assert abs(counts[u] - expected) < 0.2 * expected, (u, counts[u], expected)  # ~6 sigma
    # within the heavy user, its edges are drawn evenly: ~980 draws over 300 items reach
    # about 289 distinct items (at most ~6 per item expected, so none should dominate)
    assert len(pos_of_0) > 250
    assert max(pos_of_0.values()) < 25


def test_user_with_all_items_raises() -> None:
    users = np.array([0, 0, 0, 0, 1])
    items = np.array([0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match="every item"):
        BPRSampler(users, items, 4, generator=_gen(0))
    BPRSampler(users, items, 5, generator=_gen(0))  # one item left: fine


def test_no_edges_raises() -> None:
    with pytest.raises(ValueError):
        BPRSampler(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 5, generator=_gen(0))


def test_repeated_edges_do_not_fake_a_full_user() -> None:
    # user 0 rated item 0 twice and item 1 once; item 2 is a valid negative.
    sampler = BPRSampler(np.array([0, 0, 0]), np.array([0, 0, 1]), 3, generator=_gen(0))
    neg = sampler.negatives(torch.zeros(100, dtype=torch.long))
    assert set(neg.tolist()) == {2}
