"""Seconds per training epoch of every version size: our step against the plain PyG step.

For each dataset (MovieLens-100K and a synthetic graph of the paper's Musical Instruments
size: 27,530 users, 10,611 items, 231,312 edges) and each version ``k`` of a size table,
this times the training step of :func:`bcemb.training.trainer.train_model` (its
:func:`~bcemb.training.trainer.train_step` with :class:`~bcemb.training.recommender.BPRObjective`)
on version ``k``'s training graph, in several *variants*, interleaved step by step so that
load from other jobs hits them alike:

* ``ours``: the library's step as the trainer runs it (deterministic kernels on, the default);
* ``ours-fast``: the same with ``torch.use_deterministic_algorithms(False)`` (the fast path;
  the ratio of the two is the cost of determinism);
* ``plain``: the plain PyG step, the baseline: the same model and weights computed as the
  paper's reference code does, every layer ``SAGEConv(x, adj_t)`` on the full graph with
  PyG's own sparse aggregation (``adj_t`` a torch CSR matrix: without ``torch-sparse`` this
  is what PyG uses for a ``SparseTensor``), BatchNorm, ReLU
  (:mod:`bcemb.models.sage_reference`); ``--plain-edge-index`` adds ``plain-ei``, the same
  with an ``edge_index`` (scatter-based message passing, much slower);
* ``bc``: ``ours`` plus BC-Aligner's multi-step alignment loss (``--with-alignment``, k >= 1).

Each step is: forward -> BPR loss on one sampled batch [-> + alignment] -> backward -> Adam
step -> float(loss). It reports seconds per step, steps per epoch (``ceil(train edges /
batch)``), seconds per epoch (steps x s/step + the epoch's BPR sampling, measured once), the
estimated time of the paper's 500 epochs (validation not included), and the last lines give
the figures of issue 8, per version and then the worst over versions:

* ``deterministic_cost``: ours / ours-fast (``_max``);
* ``bc_gemm_floor``: 1 + the alignment's necessary GEMMs (``z A - t``, ``r A^T``, ``z^T r`` on
  the batch's distinct nodes; from k = 2 also ``A = W_k^T C`` and its gradient), bare, timed
  in the same rounds, / ours: the least the next ratio can be (``_max``);
* ``bc_over_nonbc``: BC-Aligner step / Non-BC step; worst: ``bc_step_ratio_max``;
* ``dense_rate``: bare same-shape ``torch.matmul`` / our step's dense part alone
  (:func:`~bcemb.models.sage.project` per layer, forward and backward, as in the step),
  alternating, medians; worst (the minimum) ``dense_rate``;
* last, ``ratio_vs_plain_pyg``: plain / ours, the minimum over versions.

FLOP count of the plain step (a multiply-add is 2 FLOPs); our step computes the same model
with fewer FLOPs (layer 1 on distinct input rows, layer 2 on distinct layer-1 rows: see
:mod:`bcemb.models.sage_plan`), so its "step GFLOP/s" is an effective rate. ``N`` nodes, ``M`` non-zeros of the
mean operator ``D^-1 A`` (twice the distinct training edges), ``L`` layers, ``D`` the
dimension, ``B`` the batch, ``F`` item-feature entries, ``P`` trainable parameters:

* per SAGE layer, forward: two dense ``[N, D] x [D, D]`` products (``lin_l`` of the mean,
  ``lin_r`` of the node itself) ``= 2 * 2*N*D*D``; the sparse aggregation ``2*M*D``;
  bias, sum, BatchNorm and ReLU ``~10*N*D``;
* per SAGE layer, backward: dense ``2x`` forward (gradient w.r.t. the input and w.r.t. the
  weight: ``8*N*D*D``); sparse ``1x`` (the transposed operator: ``2*M*D``); element-wise
  ``~20*N*D``. The first layer's input is learned too, so its input gradient is counted;
* inputs (shared user/item vectors + EmbeddingBag sums), forward and backward ``~2*(N+F)*D``;
* BPR on the batch: two dot products and three squared norms forward ``~10*B*D``, backward
  ``~20*B*D``;
* Adam: ``~12*P``;
* with alignment (``k >= 1``): ``B_k`` on the ``3B`` batch rows, forward ``2*3B*D_k*D_{k-1}``,
  backward ``2x`` that; every frozen older ``B_j`` forward ``2*3B*D_j*D_{j-1}`` and backward
  ``1x`` that (input gradient only).

In total ``~ L * (12*N*D^2 + 4*M*D + 30*N*D) + small terms``: the dense products dominate
(``12*N*D^2`` against ``4*M*D``: at ``D = 256`` and ``M/N ~ 11`` the dense part is ~70x the
sparse one). The "est. dense/sparse s" columns of the second table divide those two FLOP
counts by the measured kernel rates (two thirds of the dense FLOPs at the ``[N, D] x [D, D]``
rate, the weight gradients' third at the ``[D, N] x [N, D]`` rate); "other" is what is left
of the fastest step (element-wise ops, autograd, the optimiser, indexing, allocation).

The ``musical`` graph comes from :func:`bcemb.data.datasets.synthetic.make_synthetic`
(2 to 15 s to generate, plus a few seconds per version to build). s/step and s/epoch are
medians; the GFLOP/s rates use the fastest repetition (step or kernel), the one least
disturbed by other jobs. When other jobs share the machine's cores every number is noisy:
rerun, or compare rows from the same run only; on a loaded machine ``--threads 1`` is
usually faster and steadier than several threads that wait on each other at every op.

Usage::

    python benchmarks/train_speed.py                       # both datasets, paper sizes
    python benchmarks/train_speed.py --sizes both --steps 5
    python benchmarks/train_speed.py --dataset ml-100k --sizes quick --with-alignment
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from bcemb.data.datasets.movielens import load_movielens_100k
from bcemb.data.datasets.synthetic import make_synthetic
from bcemb.data.graph import EvolvingGraph
from bcemb.experiments.config import PROFILES, SIZE_TABLES
from bcemb.experiments.context import ExperimentData
from bcemb.losses import multi_step_alignment
from bcemb.models.graph_input import GraphInput
from bcemb.models.sage import SageConfig, SageEncoder, project
from bcemb.models.sage_plan import SagePlan
from bcemb.models.sage_reference import plain_pyg_adjacency, plain_pyg_embed
from bcemb.training.recommender import BPRObjective
from bcemb.training.trainer import Alignment, VersionData, train_step
from bcemb.transforms.base import BackwardTransform
from bcemb.transforms.linear import LinearTransform
from bcemb.utils import deterministic, resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared benchmark helpers
from _timing import median_pair  # noqa: E402

#: The paper's Amazon Musical Instruments 5-core size (users, items, edges).
MUSICAL_SIZE = (27_530, 10_611, 231_312)
#: Epochs of the paper's training run, for the "est. 500 epochs" column.
PAPER_EPOCHS = 500
#: ``--sizes`` -> (label, size table key, profile whose batch is the default).
SIZE_CHOICES = {"paper": ("paper", "amazon", "paper"), "quick": ("quick", "quick", "quick")}


@dataclass
class Row:
    """One measured (dataset, size table, version, alignment) combination."""

    dataset: str
    sizes: str
    k: int
    variant: str
    layers: int
    dim: int
    nodes: int
    nnz: int
    train_edges: int
    batch: int
    steps_timed: int
    s_step: float
    s_step_best: float
    s_sample: float
    flops: float
    dense_flops: float
    sparse_flops: float
    mm_gflops: float
    wgrad_gflops: float
    spmm_gflops: float
    #: ``ours`` only: the step's dense part alone against bare same-shape matmuls (rate ratio).
    dense_rate: float = float("nan")
    #: ``bc`` only: 1 + the bare alignment GEMMs' time / the Non-BC step's (the ratio's floor).
    bc_floor: float = float("nan")

    @property
    def align(self) -> bool:
        return self.variant == "bc"

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_edges / self.batch)

    @property
    def s_epoch(self) -> float:
        return self.steps_per_epoch * self.s_step + self.s_sample

    @property
    def est_hours(self) -> float:
        return PAPER_EPOCHS * self.s_epoch / 3600

    @property
    def step_gflops(self) -> float:
        return self.flops / self.s_step_best / 1e9

    @property
    def est_dense_s(self) -> float:
        # 2/3 of the dense FLOPs are [N,D]x[D,D] products, 1/3 weight gradients [D,N]x[N,D]
        return self.dense_flops * (2 / 3 / self.mm_gflops + 1 / 3 / self.wgrad_gflops) / 1e9

    @property
    def est_sparse_s(self) -> float:
        return self.sparse_flops / (self.spmm_gflops * 1e9)


# --------------------------------------------------------------------------- FLOP count


def step_flops(
    *,
    nodes: int,
    nnz: int,
    layers: int,
    dim: int,
    batch: float,
    feature_entries: int,
    params: int,
    align_dims: Sequence[int] = (),
) -> tuple[float, float, float]:
    """FLOPs of one training step: ``(total, dense part, sparse part)``; see the module doc.

    ``align_dims`` is ``(D_0, ..., D_k)`` when the alignment loss is on (``k >= 1``), else empty.
    """
    n, m, d, b = float(nodes), float(nnz), float(dim), float(batch)
    dense = layers * (4 * n * d * d + 8 * n * d * d)
    sparse = layers * (2 * m * d + 2 * m * d)
    elementwise = layers * (10 * n * d + 20 * n * d) + 2 * (n + feature_entries) * d
    bpr = 30 * b * d
    adam = 12 * params
    align = 0.0
    if len(align_dims) >= 2:
        rows = 3 * b
        dk, dprev = align_dims[-1], align_dims[-2]
        align += 3 * 2 * rows * dk * dprev  # B_k: forward + grad input + grad weight
        for j in range(len(align_dims) - 2, 0, -1):  # frozen B_{k-1} .. B_1
            align += 2 * 2 * rows * align_dims[j] * align_dims[j - 1]
        align += 10 * rows * dprev * (len(align_dims) - 1)  # residual squares, means
    return dense + sparse + elementwise + bpr + adam + align, dense, sparse


# --------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _times(
    fn: Callable[[], object], device: torch.device, *, reps: int, budget_s: float
) -> list[float]:
    """Seconds of ``reps`` calls of ``fn`` after a warm-up (at least 3, until ``budget_s``)."""
    fn()  # warm-up
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < reps and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def kernel_rates(graph: GraphInput, dim: int, device: torch.device) -> tuple[float, float, float]:
    """GFLOP/s of the step's kernels on this graph's shapes, best of several repetitions.

    Returns the rates of ``torch.mm`` ``[N, D] x [D, D]`` (a plain layer's forward product and
    its input gradient), ``[D, N] x [N, D]`` (the weight gradient) and the sparse mean
    aggregation ``D^-1 A @ [N, D]``. The fastest repetition is the one least disturbed by
    other jobs, so these approximate what the machine can do.
    """
    n = graph.num_nodes
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(n, dim, generator=gen).to(device)
    w = torch.randn(dim, dim, generator=gen).to(device)
    xt = x.t()
    best = {}
    for key, fn in {
        "mm": lambda: torch.mm(x, w),
        "wgrad": lambda: torch.mm(xt, x),
        "spmm": lambda: graph.mean_adj @ x,
    }.items():
        best[key] = min(_times(fn, device, reps=20, budget_s=1.0))
    dense = 2 * n * dim * dim / 1e9
    return dense / best["mm"], dense / best["wgrad"], 2 * graph.mean_adj._nnz() * dim / 1e9 / best["spmm"]


def dense_part_pair(model: SageEncoder, plan: SagePlan, device: torch.device, repeats: int) -> tuple[float, float]:
    """Medians (s) of the step's dense part alone and of bare same-shape ``torch.matmul``.

    The step's part is :func:`~bcemb.models.sage.project` of every layer, forward and
    backward (input and weight gradients) as autograd runs it in the step, on inputs with the
    plan's row counts; the bare part is the same three products per layer (``[R, D] x [D, 2D]``,
    ``[R, 2D] x [2D, D]``, ``[2D, R] x [R, D]``) on contiguous operands. Timed alternately
    (:func:`_timing.median_pair`), so load from other jobs hits both alike; their ratio is
    the dense part's fraction of the same-shape matmul rate.
    """
    gen = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device)

    layers = []
    for i, (conv, layer) in enumerate(zip(model.convs, plan.layers, strict=True)):
        # the rows each layer's GEMM projects: layer 1 its cheaper input form, then the sources
        rows = model.input_rows(plan) if i == 0 else layer.op.shape[1] // 2
        d = conv.lin_l.weight.shape[1]
        x = randn(rows, d).requires_grad_()
        bare = (randn(rows, d), randn(d, 2 * d), randn(rows, 2 * d), randn(2 * d, d), randn(2 * d, rows))
        layers.append((conv, x, randn(2 * rows, d), bare))

    def step_part() -> None:
        for conv, x, grad, _ in layers:
            torch.autograd.grad(project(conv, x), (x, conv.lin_l.weight, conv.lin_r.weight), grad)
        _sync(device)

    def bare_part() -> None:
        for _, _, _, (x, w, g, wt, gt) in layers:
            torch.matmul(x, w), torch.matmul(g, wt), torch.matmul(gt, x)
        _sync(device)

    return median_pair(step_part, bare_part, repeats)


def _align_gemms(rows: int, dim: int, prev_dim: int, chain: bool, device: torch.device) -> Callable[[], None]:
    """The alignment's necessary arithmetic, bare: ``r = z A - t``, ``r A^T``, ``z^T r``; with
    an older chain (``k >= 2``) also ``A = W_k^T C`` and the weight gradient ``G C^T``."""
    shapes = ((rows, dim), (dim, prev_dim), (rows, prev_dim), (prev_dim, prev_dim))
    z, w_t, t, c = (torch.randn(*shape).to(device) for shape in shapes)

    def run() -> None:
        a = w_t @ c if chain else w_t
        r = torch.addmm(t, z, a, beta=-1)
        grad_a = torch.mm(z.T, r)
        torch.mm(r, a.T)
        if chain:
            torch.mm(grad_a, c.T)
        _sync(device)

    return run


class _PlainPyG(nn.Module):
    """``model``'s weights computed by plain PyG layers (the baseline), same call signature."""

    def __init__(self, model: SageEncoder, adjacency: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.adjacency = adjacency

    def forward(self, graph: GraphInput) -> tuple[torch.Tensor, torch.Tensor]:
        x = plain_pyg_embed(self.model, graph, self.adjacency)
        return x[: graph.num_users], x[graph.num_users :]


@dataclass
class VersionTimes:
    """What :func:`time_variants` measured on one version.

    Attributes:
        steps: Seconds of each timed step, per variant (interleaved).
        s_sample: Seconds of one epoch's BPR sampling.
        n_params: Trainable parameters per variant.
        align_gemm: Seconds of the bare alignment GEMMs, timed in the same rounds (with ``bc``).
        dense: Medians (s) of our step's dense part alone and of bare same-shape matmuls.
    """

    steps: dict[str, list[float]]
    s_sample: float
    n_params: dict[str, int]
    align_gemm: list[float] = field(default_factory=list)
    dense: tuple[float, float] = (float("nan"), float("nan"))


def time_variants(
    data: VersionData,
    feature_sizes: dict[str, int],
    sizes: Sequence[tuple[int, int]],
    k: int,
    variants: Sequence[str],
    *,
    batch_size: int,
    lr: float,
    weight_decay: float,
    lam: float,
    steps: int,
    warmup: int,
    row_budget_s: float,
    device: torch.device,
    dense_repeats: int = 15,
    seed: int = 0,
) -> VersionTimes:
    """Time the training step of every variant on version ``k``, interleaved step by step.

    With ``bc``, the bare alignment GEMMs (on the batches' mean number of distinct nodes) are
    timed in the same rounds; with ``ours``, its dense part alone against bare matmuls after.
    """
    layers, dim = sizes[k]
    g = data.train_graph
    objective = BPRObjective(data, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    batches = list(objective.batches(batch_size, gen))  # the epoch's draws happen here, once
    s_sample = time.perf_counter() - t0

    runners: dict[str, Callable[[int], object]] = {}
    n_params: dict[str, int] = {}
    models: dict[str, nn.Module] = {}
    for name in variants:
        torch.manual_seed(seed)
        model: nn.Module = SageEncoder(SageConfig(layers, dim, feature_sizes)).to(device)
        if name.startswith("plain"):
            kind = "edge_index" if name == "plain-ei" else "adj_t"
            model = _PlainPyG(model, plain_pyg_adjacency(g, kind).to(device))
        model.train()
        params = list(model.parameters())
        alignment = None
        if name == "bc":
            prev_dim = sizes[k - 1][1]
            transform = LinearTransform(dim, prev_dim).to(device)
            older: list[BackwardTransform] = [  # frozen B_1 .. B_{k-1}, oldest first
                LinearTransform(sizes[j][1], sizes[j - 1][1]).frozen_copy().to(device)
                for j in range(1, k)
            ]
            target = torch.randn(g.num_nodes, prev_dim, device=device)  # frozen M_{k-1} output
            alignment = Alignment(transform, multi_step_alignment, older, target, lam)
            params += list(transform.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        det = name != "ours-fast"

        def run(i: int, model=model, opt=opt, alignment=alignment, det=det) -> None:  # noqa: ANN001
            with deterministic(det):
                train_step(model, objective, batches[i % len(batches)], opt, alignment)
            _sync(device)

        runners[name] = run
        models[name] = model
        n_params[name] = sum(p.numel() for p in params if p.requires_grad)
    if "bc" in variants:
        n_users = g.num_users
        rows = statistics.mean(len(torch.unique(torch.cat([u, p + n_users, q + n_users]))) for u, p, q in batches)
        gemms = _align_gemms(round(rows), dim, sizes[k - 1][1], k >= 2, device)
        runners["align-gemm"] = lambda i: gemms()

    g.sage_plan(layers)  # built once per graph, outside the timed steps
    i = 0
    warm_start = time.perf_counter()
    last = 0.0
    for _ in range(max(warmup, 1)):
        t = time.perf_counter()
        for run in runners.values():
            run(i)
        last = time.perf_counter() - t
        i += 1
        if time.perf_counter() - warm_start > row_budget_s / 2:  # slow sizes: one warm-up is enough
            break
    # Fit the timed rounds into the row's budget, but time at least two.
    n_rounds = max(2, min(steps, int(row_budget_s / max(last, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(n_rounds):
        for name, run in runners.items():
            t = time.perf_counter()
            run(i)
            times[name].append(time.perf_counter() - t)
        i += 1
    out = VersionTimes({v: times[v] for v in variants}, s_sample, n_params, times.get("align-gemm", []))
    if "ours" in models:
        model = models["ours"]
        assert isinstance(model, SageEncoder)
        out.dense = dense_part_pair(model, g.sage_plan(layers), device, dense_repeats)
    return out


# --------------------------------------------------------------------------- driver


def load_dataset(name: str, synthetic_size: tuple[int, int, int], seed: int) -> EvolvingGraph:
    if name == "ml-100k":
        return load_movielens_100k()
    u, i, e = synthetic_size
    return make_synthetic(num_users=u, num_items=i, num_edges=e, seed=seed)


def _parse_triple(text: str) -> tuple[int, int, int]:
    parts = [int(x) for x in text.replace("x", ",").split(",")]
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected USERS,ITEMS,EDGES, got {text!r}")
    return parts[0], parts[1], parts[2]


def _parse_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


MAIN_COLS = [
    # (header, width, format function)
    ("dataset", 9, lambda r: r.dataset),
    ("sizes", 6, lambda r: r.sizes),
    ("k", 2, lambda r: str(r.k)),
    ("variant", 9, lambda r: r.variant),
    ("layers", 7, lambda r: str(r.layers)),
    ("dim", 5, lambda r: str(r.dim)),
    ("nodes", 7, lambda r: str(r.nodes)),
    ("nnz", 8, lambda r: str(r.nnz)),
    ("train_edges", 12, lambda r: str(r.train_edges)),
    ("batch", 6, lambda r: str(r.batch)),
    ("steps/epoch", 12, lambda r: str(r.steps_per_epoch)),
    ("timed", 6, lambda r: str(r.steps_timed)),
    ("s/step", 8, lambda r: f"{r.s_step:.3f}"),
    ("s/epoch", 9, lambda r: f"{r.s_epoch:.1f}"),
    ("est. 500 epochs (h)", 20, lambda r: f"{r.est_hours:.2f}"),
    ("GFLOP/step", 11, lambda r: f"{r.flops / 1e9:.2f}"),
    ("step GFLOP/s", 13, lambda r: f"{r.step_gflops:.1f}"),
    ("matmul GFLOP/s", 15, lambda r: f"{r.mm_gflops:.1f}"),
    ("ratio", 6, lambda r: f"{r.step_gflops / r.mm_gflops:.2f}"),
]

SPLIT_COLS = [
    ("dataset", 9, lambda r: r.dataset),
    ("sizes", 6, lambda r: r.sizes),
    ("k", 2, lambda r: str(r.k)),
    ("variant", 9, lambda r: r.variant),
    ("best s/step", 12, lambda r: f"{r.s_step_best:.3f}"),
    ("wgrad GFLOP/s", 14, lambda r: f"{r.wgrad_gflops:.1f}"),
    ("spmm GFLOP/s", 13, lambda r: f"{r.spmm_gflops:.1f}"),
    ("est. dense s", 13, lambda r: f"{r.est_dense_s:.3f}"),
    ("est. sparse s", 14, lambda r: f"{r.est_sparse_s:.3f}"),
    ("other s", 8, lambda r: f"{r.s_step_best - r.est_dense_s - r.est_sparse_s:.3f}"),
    ("dense %", 8, lambda r: f"{100 * r.est_dense_s / r.s_step_best:.0f}"),
    ("sparse %", 9, lambda r: f"{100 * r.est_sparse_s / r.s_step_best:.0f}"),
    ("sampling s/epoch", 17, lambda r: f"{r.s_sample:.3f}"),
]


#: Issue 8's figures: (per-version name, final name, worst of the versions). The final lines
#: come in this order; ``ratio_vs_plain_pyg`` is the last line of the output.
FIGURES = (
    ("deterministic_cost", "deterministic_cost_max", max),  # ours / ours-fast
    ("bc_gemm_floor", "bc_gemm_floor_max", max),  # 1 + bare alignment GEMMs / ours
    ("bc_over_nonbc", "bc_step_ratio_max", max),  # bc / ours
    ("dense_rate", "dense_rate", min),  # bare matmuls / our step's dense part
    ("ratio_vs_plain_pyg", "ratio_vs_plain_pyg", min),  # plain / ours
)


def version_figures(v: dict[str, Row]) -> dict[str, float]:
    """Issue 8's figures of one version from its rows by variant (those that were measured)."""
    ours = v["ours"]
    figures = {"dense_rate": ours.dense_rate}
    if "ours-fast" in v:
        figures["deterministic_cost"] = ours.s_step / v["ours-fast"].s_step
    if "bc" in v:
        figures["bc_gemm_floor"] = v["bc"].bc_floor
        figures["bc_over_nonbc"] = v["bc"].s_step / ours.s_step
    if "plain" in v:
        figures["ratio_vs_plain_pyg"] = v["plain"].s_step / ours.s_step
    return figures


def summary_lines(rows: Sequence[Row]) -> list[str]:
    """``name value`` lines: per version, then the worst case; ``ratio_vs_plain_pyg`` last."""
    by_key: dict[tuple[str, str, int], dict[str, Row]] = {}
    for r in rows:
        by_key.setdefault((r.dataset, r.sizes, r.k), {})[r.variant] = r
    lines: list[str] = []
    worst: dict[str, list[float]] = {name: [] for name, _, _ in FIGURES}
    for (dataset, sizes, k), v in by_key.items():
        if "ours" not in v:
            continue
        tag = f"{dataset}/{sizes}/k{k}"
        if "plain-ei" in v:
            lines.append(f"ratio_vs_plain_pyg_edge_index {tag} {v['plain-ei'].s_step / v['ours'].s_step:.3f}")
        for name, value in version_figures(v).items():
            lines.append(f"{name} {tag} {value:.3f}")
            worst[name].append(value)
    lines += [f"{final} {pick(worst[name]):.3f}" for name, final, pick in FIGURES if worst[name]]
    return lines


def _table(rows: Sequence[Row], cols) -> str:  # noqa: ANN001
    lines = ["  ".join(f"{h:>{w}}" for h, w, _ in cols)]
    lines += ["  ".join(f"{f(r):>{w}}" for _, w, f in cols) for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["ml-100k", "musical", "both"], default="both")
    parser.add_argument(
        "--sizes", choices=["paper", "quick", "both"], default="paper",
        help="paper: SIZE_TABLES['amazon'] (the paper's); quick: the quick profile's table",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None,
        help="BPR batch (default: the profile's: 2048 for paper, 8192 for quick)",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per size (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument(
        "--row-budget", type=float, default=15.0,
        help="seconds of timed steps per row; slower sizes time fewer, at least 2 (default 15)",
    )
    parser.add_argument(
        "--with-alignment", action="store_true",
        help="also time a BC-Aligner step (multi-step alignment; versions k >= 1)",
    )
    parser.add_argument(
        "--plain-edge-index", action="store_true",
        help="also time the plain PyG step with an edge_index (scatter aggregation; slow)",
    )
    parser.add_argument("--lam", type=float, default=16.0, help="alignment weight of the bc variant")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--versions", type=_parse_ints, default=None,
        help="comma-separated k to time (default: all)"
    )
    parser.add_argument(
        "--synthetic-size", type=_parse_triple, default=MUSICAL_SIZE,
        help="USERS,ITEMS,EDGES of the 'musical' graph (default: the paper's 27530,10611,231312)",
    )
    parser.add_argument(
        "--dense-repeats", type=int, default=15,
        help="alternating repetitions of the dense-part timing per version (default 15)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the benchmark, print the tables, and return the rows."""
    args = build_parser().parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    datasets = ["ml-100k", "musical"] if args.dataset == "both" else [args.dataset]
    tables = ["paper", "quick"] if args.sizes == "both" else [args.sizes]

    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, device {device} ({dev_name}), "
        f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, "
        f"load average {load0:.2f} at start"
    )
    print(
        "Timings are medians and noisy when other jobs share the machine's cores; "
        "compare rows of one run only."
    )
    if device.type == "cpu" and load0 >= (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print(
            f"Note: the load average ({load0:.1f}) is at least the CPU count; with other jobs on "
            "the cores, several torch threads wait on each other at every op: --threads 1 may be "
            "faster and steadier."
        )
    sys.stdout.flush()

    rows: list[Row] = []
    for name in datasets:
        t0 = time.perf_counter()
        graph = load_dataset(name, args.synthetic_size, args.seed)
        exp = ExperimentData(graph, device="cpu")
        print(
            f"[{name}] {graph.num_users} users, {graph.num_items} items, {graph.num_edges} edges "
            f"(loaded in {time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        versions = args.versions if args.versions is not None else list(range(exp.num_versions))
        for k in versions:
            data = exp.version(k).to(device)
            g = data.train_graph
            feature_entries = sum(
                int(grp.offsets[g.num_items]) for grp in graph.item_features.values()
            )
            for label in tables:
                _, table_key, profile = SIZE_CHOICES[label]
                sizes = SIZE_TABLES[table_key]
                train_cfg = PROFILES[profile]["train"]
                batch = args.batch_size or train_cfg.batch_size
                layers, dim = sizes[k]
                mm, wgrad, spmm = kernel_rates(g, dim, device)
                variants = ["ours", "ours-fast", "plain"]
                if args.plain_edge_index:
                    variants.append("plain-ei")
                if args.with_alignment and k >= 1:
                    variants.append("bc")
                measured = time_variants(
                    data, exp.feature_sizes, sizes, k, variants,
                    batch_size=batch, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay,
                    lam=args.lam, steps=args.steps, warmup=args.warmup,
                    row_budget_s=args.row_budget, device=device,
                    dense_repeats=args.dense_repeats, seed=args.seed,
                )
                times = measured.steps
                step_dense, bare_dense = measured.dense
                for variant in variants:
                    total, dense, sparse = step_flops(
                        nodes=g.num_nodes, nnz=g.mean_adj._nnz(), layers=layers, dim=dim,
                        # the mean batch of an epoch (its last batch is partial)
                        batch=len(data.train_user) / math.ceil(len(data.train_user) / batch),
                        feature_entries=feature_entries, params=measured.n_params[variant],
                        align_dims=[d for _, d in sizes[: k + 1]] if variant == "bc" else (),
                    )
                    row = Row(
                        dataset=name, sizes=label, k=k, variant=variant, layers=layers, dim=dim,
                        nodes=g.num_nodes, nnz=g.mean_adj._nnz(), train_edges=len(data.train_user),
                        batch=batch, steps_timed=len(times[variant]),
                        s_step=statistics.median(times[variant]),
                        s_step_best=min(times[variant]),
                        s_sample=measured.s_sample, flops=total, dense_flops=dense, sparse_flops=sparse,
                        mm_gflops=mm, wgrad_gflops=wgrad, spmm_gflops=spmm,
                    )
                    if variant == "ours":
                        row.dense_rate = bare_dense / step_dense
                    if variant == "bc":
                        row.bc_floor = 1 + statistics.median(measured.align_gemm) / statistics.median(times["ours"])
                    rows.append(row)
                    print(
                        f"  {name} {label} k={k} {variant}: "
                        f"{row.s_step:.3f} s/step ({row.steps_timed} timed), {row.s_epoch:.1f} s/epoch",
                        flush=True,
                    )

    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print()
    print(
        f"Training step: full-graph forward + BPR (+ alignment) + backward + Adam. "
        f"s/epoch = steps/epoch x s/step + one epoch's BPR sampling; "
        f"est. {PAPER_EPOCHS} epochs excludes validation. s/step is the median step; "
        f"step GFLOP/s uses "
        f"the fastest step and matmul GFLOP/s the fastest torch.mm [N,D]x[D,D] of this run (the "
        f"repetitions least disturbed by other jobs); ratio = step GFLOP/s / matmul GFLOP/s."
    )
    print(_table(rows, MAIN_COLS))
    print()
    print(
        "Where the fastest step's time goes: FLOPs / best measured kernel rate "
        "(dense: [N,D]x[D,D] and the weight gradient [D,N]x[N,D]; sparse: D^-1 A @ [N,D]); "
        "other = the rest (element-wise, autograd, Adam, indexing)."
    )
    print(_table([r for r in rows if r.variant.startswith("plain")], SPLIT_COLS))
    print(
        f"\nload average {load1:.2f} at end ({os.cpu_count()} CPUs): "
        "numbers are noisy when other jobs run."
    )
    print(
        "\nIssue 8 figures (medians of interleaved steps): deterministic_cost = ours / ours-fast; "
        "bc_gemm_floor = 1 + the bare alignment GEMMs (z A - t, r A^T, z^T r on the batch's "
        "distinct nodes; from k = 2 also A = W_k^T C and its gradient; timed in the same rounds) / ours, the least bc_over_nonbc can be; "
        "bc_over_nonbc = BC-Aligner step / Non-BC step; dense_rate = bare same-shape matmuls / "
        "our step's dense part alone (project() forward + backward per layer, alternating, "
        "medians); ratio_vs_plain_pyg = plain PyG step / ours."
    )
    for line in summary_lines(rows):
        print(line)
    return rows


if __name__ == "__main__":
    main()
