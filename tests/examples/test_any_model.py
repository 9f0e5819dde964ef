"""examples/any_model.py at a tiny size: a non-graph model through BC-Aligner, the store and get."""

import importlib.util
from pathlib import Path

import pytest
import torch

from bcemb.training import Aligner

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "any_model.py"


def _load():
    spec = importlib.util.spec_from_file_location("any_model_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_any_model_example_runs_publishes_and_serves(tmp_path, capsys):
    errors = _load().main(tiny=True, out=tmp_path)
    out = capsys.readouterr().out
    assert len(errors) == 3 and errors[0] == 0.0
    assert "served ver-0 vectors" in out and "latest version 2" in out
    assert (tmp_path / "store" / "CURRENT").is_file()


def test_aligner_reduces_the_alignment_error_of_a_new_model():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    old = torch.nn.Linear(8, 4)
    with torch.no_grad():
        z_prev = old(x)
    new = torch.nn.Linear(8, 6)
    aligner = Aligner(z_prev, 6, lam=1.0)
    before = aligner.error(new(x))
    opt = torch.optim.Adam([*new.parameters(), *aligner.parameters()], lr=0.05)
    for _ in range(300):
        loss = aligner.loss(new(x), torch.arange(256))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert aligner.error(new(x)) < 0.1 * before


def test_aligner_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        Aligner(torch.tensor([[float("nan"), 1.0]]), 3)
    with pytest.raises(ValueError, match="unknown alignment loss"):
        Aligner(torch.zeros(2, 2), 3, loss="triple")
    with pytest.raises(ValueError, match="maps 3 -> 2, expected 4 -> 2"):
        from bcemb.transforms import LinearTransform

        Aligner(torch.zeros(2, 2), 4, transform=LinearTransform(3, 2))
    a = Aligner(torch.zeros(5, 2), 3)
    with pytest.raises(ValueError, match="2 embeddings for 3 target rows"):
        a.loss(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
