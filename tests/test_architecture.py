"""The dependency rules of the architecture, checked on the source (no imports executed)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"pipelines", "data_contracts", "flows", "serving", "deployments", "ragline"}
ALLOWED = {
    "pipelines": {"pipelines"},
    "data_contracts": {"data_contracts", "pipelines"},
    "flows": {"flows", "pipelines", "data_contracts"},
    "serving": {"serving", "pipelines"},
    "deployments": {"deployments", "flows", "serving", "pipelines"},
    "ragline": LAYERS,
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & LAYERS


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    files = list((ROOT / layer).rglob("*.py"))
    assert files, layer
    for f in files:
        bad = _imports(f) - ALLOWED[layer]
        assert not bad, f"{f.relative_to(ROOT)} imports {sorted(bad)}"
