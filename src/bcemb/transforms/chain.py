"""The chain ``B_{j+1} o ... o B_k`` that maps ver-k embeddings into any older space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bcemb.transforms.base import BackwardTransform

__all__ = ["TransformChain", "Step"]

#: One step of an applied chain: a composed matrix ``[D_out, D_in]`` of a run of linear
#: transforms, or a non-linear transform applied as is.
Step = Tensor | BackwardTransform


class TransformChain:
    """Backward transforms ``B_1 .. B_k`` of one lineage.

    ``transforms[i]`` is ``B_{i+1}`` (it maps ver-(i+1) into ver-i). Runs of consecutive
    linear transforms are composed into one matrix (in float64, then cast back); non-linear
    ones (``linear`` False) are applied step by step between them. The plan for each target
    version is cached: the chain is immutable once built.

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
        self._plans: dict[int, list[Step]] = {}

    @property
    def latest(self) -> int:
        """``k``: the version the chain starts from."""
        return len(self.transforms)

    @property
    def linear(self) -> bool:
        """Whether every link is linear (the whole chain is one matrix per version)."""
        return all(t.linear for t in self.transforms)

    def linear_to(self, version: int) -> bool:
        """Whether ``B_{j+1} .. B_k`` are all linear (``j = version``)."""
        self._check(version)
        return all(t.linear for t in self.transforms[version:])

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

        Raises:
            TypeError: A link between ``version`` and ``k`` is non-linear.
        """
        self._check(version)
        if not self.linear_to(version):
            kinds = [t.kind for t in self.transforms[version:] if not t.linear]
            raise TypeError(
                f"the chain to version {version} has non-linear links ({', '.join(kinds)}): "
                "it has no single matrix; use apply()"
            )
        if version not in self._cache:
            if version == self.latest:
                self._cache[version] = torch.eye(self.dim(version))
            else:
                self._cache[version] = _compose(self.transforms[version:])
        return self._cache[version]

    def plan(self, version: int) -> list[Step]:
        """The steps :meth:`apply` takes to ``version``, first applied first (cached).

        Each run of consecutive linear links is one composed matrix; each non-linear link is
        its own step. Empty for ``version = k``.
        """
        self._check(version)
        if version not in self._plans and self.linear_to(version):
            self._plans[version] = [] if version == self.latest else [self.matrix(version)]
        if version not in self._plans:
            steps: list[Step] = []
            run: list[BackwardTransform] = []
            for t in reversed(self.transforms[version:]):  # B_k first
                if t.linear:
                    run.insert(0, t)
                    continue
                if run:
                    steps.append(_compose(run))
                    run = []
                steps.append(t)
            if run:
                steps.append(_compose(run))
            self._plans[version] = steps
        return self._plans[version]

    @torch.no_grad()
    def apply(self, z: Tensor, version: int) -> Tensor:
        """Ver-``version`` compatible embeddings from ver-k ones.

        One matrix product when the links are linear; otherwise the steps of :meth:`plan`.

        Shapes:
            z: ``[N, D_k]`` -> ``[N, D_version]``.
        """
        for step in self.plan(version):
            if isinstance(step, Tensor):
                z = z @ step.to(device=z.device, dtype=z.dtype).T
            else:
                z = step(z)
        return z

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


def _compose(run: Sequence[BackwardTransform]) -> Tensor:
    """``W_1 W_2 ... W_n`` of linear links ``run = [B_{j+1}, .., B_m]``: float64 on the CPU,
    returned as contiguous float32."""
    m = run[0].matrix().detach().to("cpu", torch.float64)
    for t in run[1:]:
        m = m @ t.matrix().detach().to("cpu", torch.float64)
    return m.to(torch.float32).contiguous()
