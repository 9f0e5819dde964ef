"""Time the synthetic generator at the paper's dataset sizes against a plain random baseline.

The baseline draws the same number of uniform (user, item) pairs with
``np.random.default_rng().integers`` and builds an :class:`EvolvingGraph` from them with
``from_log`` (no features), i.e. the cost of the graph itself without any model behind it.

Usage::

    python benchmarks/synthetic_speed.py --scale grocery
    python benchmarks/synthetic_speed.py --scale small musical grocery --repeat 3
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time
from collections.abc import Callable

import numpy as np

from bcemb.data.datasets.synthetic import make_synthetic
from bcemb.data.graph import EvolvingGraph

# (users, items, edges) of the paper's Amazon 2018 5-core datasets; "small" is the default.
SCALES: dict[str, tuple[int, int, int]] = {
    "small": (2_000, 1_000, 40_000),
    "musical": (27_530, 10_611, 231_312),
    "video-games": (55_223, 17_389, 496_315),
    "grocery": (127_496, 41_280, 1_143_063),
}


def _baseline(num_users: int, num_items: int, num_edges: int, seed: int) -> EvolvingGraph:
    rng = np.random.default_rng(seed)
    user = rng.integers(0, num_users, num_edges)
    item = rng.integers(0, num_items, num_edges)
    rating = rng.integers(1, 6, num_edges)
    return EvolvingGraph.from_log(user, item, rating, np.arange(num_edges), name="baseline")


def _best_time(fn: Callable[[], EvolvingGraph], repeat: int) -> tuple[float, EvolvingGraph]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    assert out is not None
    return best, out


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one line per scale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", nargs="+", choices=sorted(SCALES), default=["grocery"])
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, best of {args.repeat}"
    )
    header = (
        f"{'scale':<12}{'users':>9}{'items':>8}{'edges':>10}"
        f"{'gen s':>8}{'edges/s':>11}{'base s':>8}{'ratio':>7}"
    )
    print(header)
    for scale in args.scale:
        u, i, e = SCALES[scale]
        gen = functools.partial(
            make_synthetic, num_users=u, num_items=i, num_edges=e, seed=args.seed
        )
        gen_s, g = _best_time(gen, args.repeat)
        base_s, _ = _best_time(functools.partial(_baseline, u, i, e, args.seed), args.repeat)
        print(
            f"{scale:<12}{g.num_users:>9}{g.num_items:>8}{g.num_edges:>10}"
            f"{gen_s:>8.2f}{g.num_edges / gen_s:>11.0f}{base_s:>8.2f}{gen_s / base_s:>7.1f}"
        )


if __name__ == "__main__":
    main()
