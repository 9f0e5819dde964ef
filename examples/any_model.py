"""BC-Aligner with an embedding model that is not a graph model, end to end.

An embedding team encodes items from their features with an MLP and trains it to predict an
item's class. It ships three versions (wider models, more items each time); each new version
is trained with BC-Aligner's alignment term added to its own loss, published into a
keep-latest store, and the store serves ver-0 compatible vectors of every item, including the
items that did not exist when version 0 was trained.

Run: ``python examples/any_model.py`` (about a minute on a laptop CPU) or with ``--tiny``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bcemb import run_folder
from bcemb.models import MODELS, save_model, save_module
from bcemb.store import EmbeddingStore, publish
from bcemb.training import Aligner, StepOutput, fit


@MODELS.register("example-item-mlp")
class ItemEncoder(nn.Module):
    """Item features -> embedding (the model), plus the class head its task trains."""

    def __init__(self, in_dim: int, hidden: int, dim: int, classes: int) -> None:
        super().__init__()
        self.dim, self._spec = dim, {"in_dim": in_dim, "hidden": hidden, "dim": dim, "classes": classes}
        self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def to_config(self) -> dict:
        return {"model": "example-item-mlp", **self._spec}

    @classmethod
    def from_config(cls, config: dict) -> ItemEncoder:
        return cls(config["in_dim"], config["hidden"], config["dim"], config["classes"])


class Classify:
    """The intended task: cross-entropy of the class head on the training rows."""

    def __init__(self, x: Tensor, y: Tensor, train_rows: Tensor) -> None:
        self.x, self.y, self.rows = x, y, train_rows

    def batches(self, batch_size: int, generator: torch.Generator):
        order = self.rows[torch.randperm(len(self.rows), generator=generator)]
        return order.split(batch_size)

    def step(self, model: ItemEncoder, ids: Tensor, *, with_rows: bool = False) -> StepOutput:
        z = model(self.x[ids])
        return StepOutput(F.cross_entropy(model.head(z), self.y[ids]), z, ids)

    @torch.no_grad()
    def embed(self, model: ItemEncoder) -> Tensor:
        return model.eval()(self.x)


class Accuracy:
    primary = "accuracy"

    def __init__(self, x: Tensor, y: Tensor, rows: Tensor) -> None:
        self.x, self.y, self.rows = x, y, rows

    @torch.no_grad()
    def __call__(self, model: ItemEncoder) -> dict[str, float]:
        pred = model.head(model(self.x[self.rows])).argmax(1)
        return {"accuracy": float((pred == self.y[self.rows]).float().mean())}


def make_items(n: int, features: int, classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """Items whose features are noisy copies of their class centre."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, features, generator=g) * 1.5
    y = torch.randint(classes, (n,), generator=g)
    return centres[y] + torch.randn(n, features, generator=g), y


def main(tiny: bool = False, out: Path | None = None, seed: int = 0) -> list[float]:
    """Train three versions, publish them, serve ver-0 vectors; returns ver-0 errors."""
    n, features, classes = (600, 16, 6) if tiny else (6000, 32, 10)
    dims, epochs = ((16, 24, 32), 8) if tiny else ((32, 48, 64), 30)
    arrivals = (n // 2, 3 * n // 4, n)  # items present at t_0, t_1, t_2
    x, y = make_items(n, features, classes, seed)
    out = Path(out or tempfile.mkdtemp(prefix="bcemb-any-model-"))
    run = out / "run"
    run_folder.claim(run, {"method": "bc-aligner", "lam": 16.0, "model": "example-item-mlp", "seed": seed,
                           "times": [0.5, 0.75, 1.0, 1.0]})
    models: list[ItemEncoder] = []
    chain = []
    errors = []
    for k, (dim, n_k) in enumerate(zip(dims, arrivals, strict=True)):
        xk, yk = x[:n_k], y[:n_k]
        split = torch.randperm(n_k, generator=torch.Generator().manual_seed(seed + k))
        train_rows, val_rows = split[: int(0.8 * n_k)], split[int(0.8 * n_k):]
        torch.manual_seed(seed + k)
        model = ItemEncoder(features, 2 * dim, dim, classes)
        # --- the BC-Aligner lines: targets from the frozen previous model, the kept chain ---
        aligner = Aligner.from_model(models[-1], xk, dim, chain=chain) if models else None
        result = fit(model, Classify(xk, yk, train_rows), Accuracy(xk, yk, val_rows),
                     aligner=aligner, epochs=epochs, batch_size=128, lr=3e-3, seed=seed + k)
        model.eval().requires_grad_(False)
        if aligner is not None:
            chain = aligner.transforms()
        models.append(model)
        with torch.no_grad():
            z_k = model(xk)
            z0_tilde = z_k
            for b in reversed(chain):  # B_1 .. B_k applied to ver-k embeddings
                z0_tilde = b(z0_tilde)
            err = float((z0_tilde - models[0](xk)).norm(dim=1).mean())
        errors.append(err)
        print(f"version {k}: {n_k} items, dim {dim}, val accuracy {result.metrics['accuracy']:.3f}, "
              f"ver-0 alignment error {err:.4f} (mean L2; ver-0 norm {float(models[0](xk).norm(dim=1).mean()):.2f})")
        vdir = run_folder.version_dir(run, k)
        save_model(vdir / run_folder.MODEL, model)
        if k:
            save_module(vdir / run_folder.TRANSFORM, chain[-1], chain[-1].to_config())
        run_folder.write_embeddings(vdir, {"user_emb": torch.zeros(0, dim), "item_emb": z_k})
        run_folder.write_ids(vdir, {"user": [], "item": [f"item{i}" for i in range(n_k)]})
        run_folder.write_version_record(vdir, {"k": k, "metrics": result.metrics, "best_epoch": result.best_epoch},
                                        result.curve)
        run_folder.mark_done(vdir, k)

    publish(run, out / "store", min_probes=64)
    store = EmbeddingStore(out / "store")
    ids = ["item0", f"item{arrivals[0]}", f"item{n - 1}"]  # an old item and two that came later
    served = store.get(ids, version=0, kind="item")
    with torch.no_grad():
        real = models[0](x[[0, arrivals[0], n - 1]]).numpy()
    gap = float(((torch.as_tensor(np.asarray(served)) - torch.as_tensor(real)).norm(dim=1)).mean())
    print(f"store at {out / 'store'}: latest version {store.latest}; served ver-0 vectors of {ids} "
          f"(mean L2 to M_0's own vectors {gap:.4f})")
    return errors


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few seconds, for tests")
    parser.add_argument("--out", type=Path, default=None, help="where the run and the store go")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.tiny, args.out, args.seed)
