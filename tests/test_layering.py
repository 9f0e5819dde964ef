"""Lower layers never import upper ones (data -> transforms -> models -> training -> methods ->
evaluation -> experiments -> store/serve -> cli). The compatibility core (transforms) knows no
model at all, so it sits below the models."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bcemb"
LAYERS = ["data", "transforms", "models", "training", "methods", "evaluation", "experiments", "store", "serve", "cli"]
# Packages that a layer must not import (anything above it).
FORBIDDEN = {layer: set(LAYERS[i + 1 :]) for i, layer in enumerate(LAYERS)}
FORBIDDEN["store"].discard("serve")  # store and serve are one level; serve imports store only


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bcemb."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("bcemb.")}
    return out


@pytest.mark.parametrize("layer", [name for name in LAYERS if (SRC / name).is_dir()])
def test_layer_imports_nothing_above_it(layer):
    bad = {}
    for path in (SRC / layer).rglob("*.py"):
        hits = _imports(path) & FORBIDDEN[layer]
        if hits:
            bad[str(path.relative_to(SRC))] = sorted(hits)
    assert not bad, f"upward imports: {bad}"
