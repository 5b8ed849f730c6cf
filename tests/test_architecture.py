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
# The stages of the library in the order data flows; each may import the core and earlier stages.
STAGES = ["ingest", "index", "retrieval", "generation", "evaluation", "optimization"]
CORE = {"settings", "schemas", "ids", "store", "models", "runtime", "sample"}


def _modules(path: Path) -> set[str]:
    """Every absolute module path that PATH imports (`from a.b import c` counts a.b and a.b.c)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _layers(path: Path) -> set[str]:
    return {m.split(".")[0] for m in _modules(path)} & LAYERS


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    files = list((ROOT / layer).rglob("*.py"))
    assert files, layer
    for f in files:
        bad = _layers(f) - ALLOWED[layer]
        assert not bad, f"{f.relative_to(ROOT)} imports {sorted(bad)}"


def _part_of_pipelines(module: str) -> str | None:
    """The stage or core module that a `pipelines.x.y` path belongs to (None: not pipelines)."""
    parts = module.split(".")
    if parts[0] != "pipelines" or len(parts) < 2:
        return None
    return parts[1]


def test_the_library_is_laid_out_by_stage() -> None:
    top = {p.stem for p in (ROOT / "pipelines").glob("*.py")} - {"__init__"}
    packages = {p.parent.name for p in (ROOT / "pipelines").glob("*/__init__.py")}
    assert top == CORE, "top-level modules of pipelines/ are the core"
    assert packages == set(STAGES)
    for stage in STAGES:
        doc = ast.get_docstring(ast.parse((ROOT / "pipelines" / stage / "__init__.py").read_text()))
        assert doc and len(doc) > 120, f"pipelines/{stage}/__init__.py says what the stage owns"


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_the_core_and_earlier_stages_only(stage: str) -> None:
    allowed = CORE | set(STAGES[: STAGES.index(stage) + 1])
    for f in (ROOT / "pipelines" / stage).rglob("*.py"):
        used = {p for m in _modules(f) if (p := _part_of_pipelines(m))}
        bad = used - allowed
        assert not bad, f"{f.relative_to(ROOT)} imports the later stage(s) {sorted(bad)}"


def test_the_core_imports_no_stage() -> None:
    for name in CORE:
        used = {p for m in _modules(ROOT / "pipelines" / f"{name}.py") if (p := _part_of_pipelines(m))}
        assert used <= CORE, f"pipelines/{name}.py imports {sorted(used - CORE)}"


def test_the_rules_catch_a_later_stage_import(tmp_path: Path) -> None:
    """The checker itself: a retrieval module that imports optimization is found."""
    f = tmp_path / "bad.py"
    f.write_text("from pipelines.optimization.search import search\nimport pipelines.evaluation.metrics\n")
    used = {p for m in _modules(f) if (p := _part_of_pipelines(m))}
    assert used - (CORE | set(STAGES[:3])) == {"optimization", "evaluation"}


def test_modules_stay_small() -> None:
    """No library or serving module grows past ~350 lines without being split by concern."""
    big = [
        f"{f.relative_to(ROOT)}: {n}"
        for layer in ("pipelines", "serving")
        for f in (ROOT / layer).rglob("*.py")
        if (n := len(f.read_text().splitlines())) > 360
    ]
    assert not big, big
