from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from bcemb.evaluation.chains import chain_errors, errors_frame, hop_summary, plot_heatmaps, plot_hops


class _Fixed(torch.nn.Module):
    """A 'model' that returns fixed embeddings whatever the graph."""

    def __init__(self, users, items):
        super().__init__()
        self.users, self.items = users, items

    def forward(self, graph):
        return self.users, self.items


def test_chain_errors_hand_computed(seed):
    torch.manual_seed(seed)
    dims = (2, 3, 4)
    zs = [torch.randn(5, d) for d in dims]  # rows: 2 users then 3 items
    ws = [None, torch.randn(2, 3), torch.randn(3, 4)]  # B_1: 3 -> 2, B_2: 4 -> 3
    versions = []
    for k, z in enumerate(zs):
        t = None
        if k:
            t = torch.nn.Linear(dims[k], dims[k - 1], bias=False)
            t.weight.data = ws[k]
        versions.append(SimpleNamespace(model=_Fixed(z[:2], z[2:]), transform=t))
    err = chain_errors(versions, lambda k: None)
    exp01 = (zs[1] @ ws[1].T - zs[0]).norm(dim=1).mean()
    exp12 = (zs[2] @ ws[2].T - zs[1]).norm(dim=1).mean()
    exp02 = (zs[2] @ ws[2].T @ ws[1].T - zs[0]).norm(dim=1).mean()
    assert np.isclose(err[0, 1], exp01) and np.isclose(err[1, 2], exp12) and np.isclose(err[0, 2], exp02)
    assert np.isnan(err[1, 0]) and np.isnan(err[2, 2])
    frame = errors_frame(err, method="m", seed=0)
    assert sorted(zip(frame["j"], frame["k"], frame["hops"])) == [(0, 1, 1), (0, 2, 2), (1, 2, 1)]


def test_hop_summary_and_figures(tmp_path):
    frame = pd.DataFrame({
        "method": ["a"] * 6, "seed": [0, 0, 0, 1, 1, 1], "j": [0, 1, 0] * 2, "k": [1, 2, 2] * 2,
        "hops": [1, 1, 2] * 2, "error": [1.0, 3.0, 5.0, 2.0, 4.0, 7.0],
    })
    s = hop_summary(frame).set_index("hops")
    assert s.loc[1, "error"] == 2.5 and s.loc[2, "error"] == 6.0 and s.loc[1, "seeds"] == 2
    assert plot_heatmaps(frame, tmp_path / "h.png").stat().st_size > 0
    assert plot_hops(hop_summary(frame), tmp_path / "p.png").stat().st_size > 0
