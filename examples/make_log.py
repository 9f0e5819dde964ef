"""Write a small interaction log as CSV, in the format ``--dataset table`` reads.

Usage: ``python examples/make_log.py events.csv [--users 400] [--items 300] [--events 12000]``

Columns: ``user`` (ids like ``u17``), ``item`` (``i42``), ``time`` (ISO 8601 dates),
``stars`` (ratings 1..5) and ``genres`` (item features joined by ``|``). The events come from
bcemb's synthetic generator, so they have the structure (communities, drifting tastes,
informative item features) that the methods need; any log with these kinds of columns works.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from bcemb.data.datasets.synthetic import make_synthetic


def make_log(num_users: int = 400, num_items: int = 300, num_events: int = 12000, seed: int = 0) -> pd.DataFrame:
    """The log as a DataFrame, one row per event, in time order."""
    g = make_synthetic(num_users=num_users, num_items=num_items, num_edges=num_events, seed=seed)
    groups = list(g.item_features.values())
    genres = ["|".join(v for grp in groups for v in grp.bag(i)) for i in range(g.num_items)]
    start = pd.Timestamp("2024-01-01", tz="UTC")
    ts = np.asarray(g.timestamp, dtype=np.float64)
    span = max(float(ts.max() - ts.min()), 1.0)
    times = start + pd.to_timedelta((ts - ts.min()) / span * 365, unit="D")  # one year
    return pd.DataFrame({
        "user": [f"u{g.user_ids[u]}" for u in g.user],
        "item": [f"i{g.item_ids[i]}" for i in g.item],
        "time": times.strftime("%Y-%m-%dT%H:%M:%S"),
        "stars": g.rating.astype(int),
        "genres": [genres[i] for i in g.item],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--events", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = make_log(args.users, args.items, args.events, args.seed)
    frame.to_csv(args.path, index=False)
    print(f"wrote {len(frame):,} events of {frame.user.nunique():,} users and {frame.item.nunique():,} items to {args.path}")


if __name__ == "__main__":
    main()
