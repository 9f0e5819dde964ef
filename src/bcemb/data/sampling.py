"""BPR sampling: users uniformly, one never-observed negative item per positive edge."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = ["BPRSampler"]


class BPRSampler:
    """Draws ``(user, positive item, negative item)`` triples for one epoch at a time.

    Users are sampled uniformly: each training edge is drawn with weight ``1 / deg(user)``.
    An epoch has as many samples as training edges; negatives are fresh each epoch, drawn
    uniformly among ``num_items`` items and rejected while they are a positive of the user.

    Args:
        user: User of each training edge. Shape ``[E]``.
        item: Item of each training edge. Shape ``[E]``.
        num_items: Items to draw negatives from (``0..num_items-1``).
        generator: The random generator (data code never touches global RNG state).
    """

    def __init__(
        self, user: np.ndarray, item: np.ndarray, num_items: int, *, generator: torch.Generator
    ) -> None:
        self.user = torch.as_tensor(user, dtype=torch.long)
        self.item = torch.as_tensor(item, dtype=torch.long)
        if self.user.numel() == 0:
            raise ValueError("no training edges to sample from")
        self.num_items = int(num_items)
        self.generator = generator
        deg = torch.bincount(self.user).double()
        self.weights = 1.0 / deg[self.user]
        self._pos_keys = torch.unique(self.user * self.num_items + self.item)  # sorted
        distinct_per_user = torch.bincount(torch.div(self._pos_keys, self.num_items, rounding_mode="floor"))
        if bool((distinct_per_user >= self.num_items).any()):
            raise ValueError("a user has interacted with every item: no negative exists")

    def __len__(self) -> int:
        return int(self.user.numel())

    def is_positive(self, user: Tensor, item: Tensor) -> Tensor:
        """Whether each (user, item) pair is a training positive."""
        keys = user * self.num_items + item
        pos = torch.searchsorted(self._pos_keys, keys).clamp(max=self._pos_keys.numel() - 1)
        return self._pos_keys[pos] == keys

    def negatives(self, user: Tensor) -> Tensor:
        """One uniform negative item per user, never a positive of that user."""
        neg = torch.randint(self.num_items, user.shape, generator=self.generator)
        bad = self.is_positive(user, neg)
        while bool(bad.any()):
            neg[bad] = torch.randint(self.num_items, (int(bad.sum()),), generator=self.generator)
            bad = self.is_positive(user, neg)
        return neg

    def epoch(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Yield the mini-batches ``(user, pos, neg)`` of one epoch. Shapes ``[B]`` each."""
        n = len(self)
        if n >= 2**24:  # torch.multinomial's category limit: fall back to inverse-CDF
            cdf = torch.cumsum(self.weights, 0)
            draws = torch.rand(n, generator=self.generator, dtype=torch.float64) * cdf[-1]
            idx = torch.searchsorted(cdf, draws).clamp(max=n - 1)
        else:
            idx = torch.multinomial(self.weights, n, replacement=True, generator=self.generator)
        user, pos = self.user[idx], self.item[idx]
        neg = self.negatives(user)
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            yield user[sl], pos[sl], neg[sl]
