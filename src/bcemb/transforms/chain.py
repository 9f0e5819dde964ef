"""The chain ``B_{j+1} o ... o B_k`` that maps ver-k embeddings into any older space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bcemb.transforms.base import BackwardTransform

__all__ = ["TransformChain"]


class TransformChain:
    """Backward transforms ``B_1 .. B_k`` of one lineage.

    ``transforms[i]`` is ``B_{i+1}`` (it maps ver-(i+1) into ver-i). The composed matrix for
    each target version is cached: the chain is immutable once built.

    Example:
        >>> chain = TransformChain([b1, b2, b3])
        >>> z0 = chain.apply(z3, version=0)  # == b1(b2(b3(z3)))
    """

    def __init__(self, transforms: Sequence[BackwardTransform]) -> None:
        self.transforms = list(transforms)
        for i, (a, b) in enumerate(zip(self.transforms, self.transforms[1:], strict=False)):
            if b.out_dim != a.in_dim:
                raise ValueError(
                    f"B_{i + 2} outputs dimension {b.out_dim} but B_{i + 1} takes {a.in_dim}"
                )
        self._cache: dict[int, Tensor] = {}

    @property
    def latest(self) -> int:
        """``k``: the version the chain starts from."""
        return len(self.transforms)

    def dim(self, version: int) -> int:
        """``D_j`` of a version of the chain."""
        self._check(version)
        if not self.transforms:
            raise ValueError("an empty chain does not know its dimension")
        return self.transforms[version].out_dim if version < self.latest else self.transforms[-1].in_dim

    def _check(self, version: int) -> None:
        if not 0 <= version <= self.latest:
            raise KeyError(f"unknown version {version}; the chain covers 0..{self.latest}")

    @torch.no_grad()
    def matrix(self, version: int) -> Tensor:
        """``W_{j+1} ... W_k``: the composed matrix to ``version``. Shape ``[D_j, D_k]``.

        Composed in float64 on the CPU so that long chains lose no precision, returned as
        float32 (the serving precision); the one composition that training, evaluation, the
        store and every export worker share, so that they agree bit for bit.
        """
        self._check(version)
        if version not in self._cache:
            if version == self.latest:
                self._cache[version] = torch.eye(self.dim(version))
            else:
                m = self.transforms[version].matrix().detach().to("cpu", torch.float64)
                for t in self.transforms[version + 1 :]:
                    m = m @ t.matrix().detach().to("cpu", torch.float64)
                self._cache[version] = m.to(torch.float32).contiguous()
        return self._cache[version]

    @torch.no_grad()
    def apply(self, z: Tensor, version: int) -> Tensor:
        """Ver-``version`` compatible embeddings from ver-k ones with one matrix product.

        Shapes:
            z: ``[N, D_k]`` -> ``[N, D_version]``.
        """
        self._check(version)
        if version == self.latest:
            return z
        m = self.matrix(version).to(device=z.device, dtype=z.dtype)
        return z @ m.T

    @torch.no_grad()
    def apply_stepwise(self, z: Tensor, version: int) -> Tensor:
        """The same as :meth:`apply`, one transform at a time (the reference semantics)."""
        self._check(version)
        for t in reversed(self.transforms[version:]):
            z = t(z)
        return z

    def to(self, version: int) -> Tensor:
        """Alias of :meth:`matrix` (STYLE: ``TransformChain.to(version=j)``)."""
        return self.matrix(version)
