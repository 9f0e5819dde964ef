"""Cost of the gate's paired bootstrap interval per consumer (:func:`bcemb.store.bootstrap.drop_interval`).

For probe sets of each size (ROC-AUC of a binary task, scores with ties), the paired interval
with 1,000 resamples is timed alternately with one scikit-learn ``roc_auc_score`` call on the
same rows (what the gate computed before the interval), so the ratio is fair on a busy
machine. Prints ``name value`` lines:

* ``interval_s_<n>``: seconds per paired interval (1,000 resamples);
* ``interval_cpu_s_<n>``: its process CPU time (the machine's load left out);
* ``ratio_vs_one_auc_<n>``: median interval time over one scikit-learn ROC-AUC.

Usage:
    python benchmarks/gate_bootstrap.py [--sizes 123,1000,12500] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared benchmark helpers
from _timing import median_pair  # noqa: E402

from bcemb.store.bootstrap import RowScores, drop_interval  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="123,1000,12500", help="probe rows")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    for n in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(n)
        y = rng.integers(0, 2, n)
        base = RowScores("roc_auc", np.round(y + rng.standard_normal(n), 3), y)
        cand = RowScores("roc_auc", base.scores + rng.normal(0, 0.3, n), y)

        def interval() -> object:
            return drop_interval(cand, base, resamples=args.resamples, seed=0)

        t_int, t_auc = median_pair(interval, lambda: roc_auc_score(y, cand.scores), args.repeats)
        cpu = time.process_time()
        interval()
        print(f"interval_s_{n} {t_int:.4f}")
        print(f"interval_cpu_s_{n} {time.process_time() - cpu:.4f}")
        print(f"ratio_vs_one_auc_{n} {t_int / t_auc:.1f}")


if __name__ == "__main__":
    main()
