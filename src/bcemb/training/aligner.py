"""BC-Aligner for your own training loop: an alignment term to add to any task loss.

Example (the added lines of an existing PyTorch loop are marked)::

    aligner = Aligner(z_prev, new_dim=256, chain=old_transforms)          # + 1
    opt = torch.optim.Adam([*model.parameters(), *aligner.parameters()])  # ~ changed
    for x, y, ids in loader:
        z = model(x)
        loss = task_loss(z, y) + aligner.loss(z, ids)                     # + 1
        opt.zero_grad(); loss.backward(); opt.step()
    b_k = aligner.transform                                              # + 1: publish it

``z_prev`` are the frozen previous model's embeddings of every row (``Aligner.from_model``
computes them), ``ids`` the rows of the batch, and ``chain`` the kept ``B_1 .. B_{k-1}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from bcemb.losses import multi_step_alignment, single_step_alignment
from bcemb.training.trainer import Alignment, TrainOutcome
from bcemb.transforms import TRANSFORMS, BackwardTransform, TransformChain

__all__ = ["Aligner", "fit"]

_LOSSES: dict[str, Callable[..., Tensor]] = {"multi": multi_step_alignment, "single": single_step_alignment}


class Aligner(nn.Module):
    r"""The joint alignment term ``lam * L_align(B_k(z_k), z_{k-1})`` of Hu et al. (KDD 2022).

    Owns the new backward transform ``B_k`` (trained with your model: put
    :meth:`parameters` into your optimiser) and the frozen targets. With ``loss="multi"``
    (BC-Aligner) the error is penalised as the kept transforms ``B_1 .. B_{k-1}`` amplify it
    on its way to every older version; ``"single"`` is Joint-Lin-SLoss.

    Args:
        previous: ``z_{k-1}`` of every row, from the frozen ``M_{k-1}``. Shape ``[N, D_{k-1}]``.
        new_dim: ``D_k``, the new model's output dimension.
        chain: The kept transforms ``B_1 .. B_{k-1}`` (oldest first; may be empty).
        transform: A transform name from :data:`bcemb.transforms.TRANSFORMS` or an instance
            ``[D_k -> D_{k-1}]``. Default ``"linear"``.
        loss: ``"multi"`` (BC-Aligner, default) or ``"single"``.
        lam: The weight lambda (16 in the paper).

    Shapes:
        loss(z_new ``[B, D_k]``, ids ``[B]``) -> scalar.
    """

    def __init__(
        self,
        previous: Tensor,
        new_dim: int,
        *,
        chain: Sequence[BackwardTransform] | TransformChain = (),
        transform: str | BackwardTransform = "linear",
        loss: str = "multi",
        lam: float = 16.0,
    ) -> None:
        super().__init__()
        if previous.ndim != 2:
            raise ValueError(f"previous must be [N, D_prev], got shape {tuple(previous.shape)}")
        if not torch.isfinite(previous).all():
            raise ValueError("previous embeddings hold NaN or infinite values")
        if loss not in _LOSSES:
            raise ValueError(f"unknown alignment loss {loss!r}; valid: {', '.join(_LOSSES)}")
        if not lam >= 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        prev_dim = int(previous.shape[1])
        if isinstance(transform, str):
            transform = TRANSFORMS.get(transform)(int(new_dim), prev_dim)
        if (transform.in_dim, transform.out_dim) != (int(new_dim), prev_dim):
            raise ValueError(
                f"the transform maps {transform.in_dim} -> {transform.out_dim}, expected {new_dim} -> {prev_dim}"
            )
        older = list(chain.transforms if isinstance(chain, TransformChain) else chain)
        self.transform = transform
        self.chain = [t.frozen_copy() for t in older]
        self.register_buffer("previous", previous.detach().clone())
        self.loss_name = loss
        self.lam = float(lam)
        self._term: Alignment | None = None

    @classmethod
    @torch.no_grad()
    def from_model(cls, prev_model: nn.Module, inputs: object, new_dim: int, **kwargs: object) -> Aligner:
        """An aligner whose targets are ``prev_model(inputs)`` (eval mode, no gradients)."""
        was_training = prev_model.training
        prev_model.eval()
        z_prev = prev_model(inputs)
        prev_model.train(was_training)
        if isinstance(z_prev, tuple):  # models of several kinds return one tensor per kind
            z_prev = torch.cat(z_prev)
        return cls(z_prev, new_dim, **kwargs)  # type: ignore[arg-type]

    def loss(self, z_new: Tensor, ids: Tensor | None = None, weight: Tensor | None = None) -> Tensor:
        """``lam`` times the alignment loss of the rows ``ids`` (all rows when None)."""
        rows = self.previous.shape[0] if ids is None else ids.shape[0]
        if z_new.shape[0] != rows:
            raise ValueError(f"{z_new.shape[0]} embeddings for {rows} target rows")
        return self.lam * self._alignment().batch_loss(z_new, ids, weight)

    def _alignment(self) -> Alignment:
        # The trainer's term, so that the version-fixed parts are prepared once here too;
        # rebuilt when .to() has replaced the target buffer.
        if self._term is None or self._term.target is not self.previous:
            self._term = Alignment(self.transform, _LOSSES[self.loss_name], self.chain, self.previous, self.lam)
        return self._term

    def transforms(self) -> list[BackwardTransform]:
        """``B_1 .. B_k``: the kept chain plus the new transform (publish these)."""
        return [*self.chain, self.transform]

    def error(self, z_new: Tensor, version: int = 0, ids: Tensor | None = None) -> float:
        """Mean L2 distance of ``z_new`` mapped to ``version`` against that version's targets.

        Only ``version = k-1`` has targets here (``previous``); other versions need their own
        embeddings, see :class:`bcemb.transforms.TransformChain`.
        """
        k = len(self.chain) + 1
        if version != k - 1:
            raise ValueError(f"this aligner holds targets of version {k - 1} only")
        target = self.previous if ids is None else self.previous[ids]
        with torch.no_grad():
            return float((self.transform(z_new) - target).norm(dim=1).mean())


def fit(
    model: nn.Module,
    objective: object,
    evaluator: object,
    *,
    aligner: Aligner | None = None,
    epochs: int = 100,
    batch_size: int = 1024,
    lr: float = 1e-3,
    eval_every: int = 5,
    warmup_epochs: int | None = None,
    patience: int | None = None,
    seed: int = 0,
    show_progress: bool | None = None,
) -> TrainOutcome:
    """Train ``model`` (and ``aligner.transform``) for one version with bcemb's training loop.

    The whole joint step: the objective's task loss plus the aligner's term, evaluation every
    ``eval_every`` epochs, the best epoch by ``evaluator.primary`` restored at the end, and
    epochs within the warm-up (default: a tenth of the epochs when aligning) not eligible, so
    that the alignment has settled in the model that is kept.

    Args:
        model: ``M_k``.
        objective: An :class:`~bcemb.training.objectives.Objective` (batches, step, embed).
        evaluator: An :class:`~bcemb.training.objectives.Evaluator` (``primary`` metric).
        aligner: The alignment term (None: train for the task alone, e.g. ``M_0``).
        epochs, batch_size, lr, eval_every, patience: The schedule (patience None: no early stop).
        warmup_epochs: Epochs not eligible as the best.
        seed: Seeds the batches (and nothing global).
        show_progress: Progress bar (None: on when logging at INFO).

    Returns:
        The :class:`~bcemb.training.TrainOutcome` (best epoch, metrics, curve).
    """
    from bcemb.training.config import TrainConfig
    from bcemb.training.trainer import Alignment, train_model

    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, eval_every=eval_every, patience=patience,
        warmup_epochs=0, ks=(1,), primary_k=1,
    )
    alignment = None
    if aligner is not None:
        alignment = Alignment(
            transform=aligner.transform, loss=_LOSSES[aligner.loss_name], previous=aligner.chain,
            target=aligner.previous, lam=aligner.lam,
        )
        if warmup_epochs is None:
            warmup_epochs = epochs // 10
    return train_model(
        model, objective, evaluator, config,  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(seed), alignment=alignment,
        warmup_epochs=warmup_epochs or 0, show_progress=show_progress, desc="fit",
    )
