"""The layers of docs/ARCHITECTURE.md: every import, module level or inside a function, runs
downward or within its layer, and no group of modules imports itself in a circle."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def layer_order() -> list[set[str]]:
    """The layers as docs/ARCHITECTURE.md writes them, lowest first."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    block = text.split("<!-- layers -->")[1].split("<!-- /layers -->")[0]
    rows = re.split(r"^\d+\. ", block, flags=re.MULTILINE)[1:]  # an item may wrap
    return [set(re.findall(r"`(\w+)/`", row)) for row in rows]


def modules() -> dict[str, Path]:
    """Every first-party module name -> its file."""
    found = {}
    for package in sorted(set().union(*layer_order())):
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The first-party modules ``path`` imports anywhere in its body (functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_the_layer_order_is_written_down_and_covers_every_package():
    layers = layer_order()
    assert len(layers) >= 5 and all(layers)
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages <= set().union(*layers), packages - set().union(*layers)


def test_every_import_runs_downward():
    level = {package: i for i, layer in enumerate(layer_order()) for package in layer}
    upward = sorted(f"{module} -> {target}" for module, targets in graph().items()
                    for target in targets
                    if level[target.split(".")[0]] > level[module.split(".")[0]])
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycle():
    edges = graph()
    # Tarjan's strongly connected components: a component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    # A package's __init__ naming its own modules (lazy re-exports) is not a cycle of code.
    cycles = [c for c in cycles if not _only_package_reexports(c, edges)]
    assert not cycles, f"import cycles: {cycles}"


def _only_package_reexports(component: list[str], edges: dict[str, set[str]]) -> bool:
    packages = {m for m in component if (REPO / m.replace(".", "/") / "__init__.py").exists()}
    rest = set(component) - packages
    return all(not (edges[m] & set(component)) for m in rest) or not rest


def test_no_module_uses_another_modules_private_names():
    """Issue 23: ``from x import _name`` and ``module._name`` across first-party modules."""
    known = modules()
    found = []
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
                for alias in node.names:
                    if alias.name.startswith("_") and node.module != name:
                        found.append(f"{name}: from {node.module} import {alias.name}")
                    if f"{node.module}.{alias.name}" in known:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in known and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__") and aliases[node.value.id] != name):
                found.append(f"{name}: {aliases[node.value.id]}.{node.attr}")
    assert not found, "private names used across modules:\n" + "\n".join(sorted(found))


#: The analysis modules that load torch on import, each with its reason. Every other one must
#: not (tables, figures and reports read records; a registry imports the spec modules that
#: define networks only when it is first asked for its specs).
ANALYSIS_NEEDS_TORCH = {
    "analysis.diagnostics": "applies trained networks (latent spaces, Grad-CAM, reliability)",
}


def analysis_modules() -> list[str]:
    return sorted(name for name in modules() if name.split(".")[0] == "analysis")


def test_the_torch_exceptions_are_analysis_modules():
    assert set(ANALYSIS_NEEDS_TORCH) <= set(analysis_modules())


@pytest.mark.parametrize("module", [m for m in analysis_modules() if m not in ANALYSIS_NEEDS_TORCH])
def test_analysis_module_imports_without_torch(module):
    """Issue 23: ``import analysis.<x>`` loads torch only where ``<x>`` needs it."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", f"import {module} loads torch"


def test_the_trial_loop_stays_small():
    """Issue 23: ``training/loop.py`` reads top to bottom; its collaborators hold the rest."""
    lines = len((REPO / "training" / "loop.py").read_text().splitlines())
    assert lines < 450, f"training/loop.py has {lines} lines"
