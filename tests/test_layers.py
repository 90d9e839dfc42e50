"""Imports run one way: types -> modalities -> data -> encoders -> fusion -> tasks -> config -> model -> training /
evaluation / explain / retrieval / serve -> api -> demo -> cli. Read from the package's source (every import statement,
function-level ones included), so a late import cannot hide a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import polymodal

PACKAGE = Path(polymodal.__file__).parent

# lowest first; a unit may import units of its own layer or below, never above
LAYERS: list[set[str]] = [
    {"errors", "registry", "types", "render", "datasets"},  # datasets: generators that need no other unit
    {"modalities"},
    {"data"},
    {"encoders"},
    {"fusion"},
    {"tasks"},
    {"config"},
    {"model", "storage"},
    {"training", "evaluation", "explain", "retrieval", "serve", "generation", "export"},
    {"api"},
    {"demo"},  # a program written with the API
    {"cli", "__main__"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """'polymodal.tasks.base' -> 'tasks'; 'polymodal.model' -> 'model'; 'polymodal' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """Every polymodal module this file imports (absolute names), wherever the import statement is."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "polymodal"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "polymodal":
                continue
            if node.module is None:  # `from . import x`: x is a module of that package
                out |= {f"{target}.{a.name}" for a in node.names}
            else:
                out.add(target)
    return out


def edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, file) for imports that cross units; the package's lazy facade
    (polymodal/__init__.py) is left out."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue
        src = unit_of(module_name(path))
        for target in imported_modules(path):
            dst = unit_of(target)
            if dst == "__init__" or target == "polymodal.__version__":
                continue
            if dst != src:
                found.append((src, dst, str(path.relative_to(PACKAGE))))
    return found


def test_every_unit_has_a_layer():
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert units <= set(LAYER), f"units without a layer: {sorted(units - set(LAYER))}"


def test_imports_only_go_down():
    upward = [f"{file}: {src} imports {dst}" for src, dst, file in edges() if LAYER[dst] > LAYER[src]]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_units():
    graph: dict[str, set[str]] = {}
    for src, dst, _ in edges():
        graph.setdefault(src, set()).add(dst)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [])


def test_the_reader_sees_late_and_relative_imports(tmp_path):
    """An import inside a function (the way cycles used to hide) and every relative form are resolved."""
    f = tmp_path / "probe.py"
    f.write_text("from . import base\nfrom ..data import Table\nimport polymodal.types\n\n\n"
                 "def f():\n    from ..api import load\n    return load\n")
    assert imported_modules(f, "polymodal.tasks.probe") == {"polymodal.tasks.base", "polymodal.data",
                                                             "polymodal.types", "polymodal.api"}
