"""Imports go one way: search.app -> search -> proxies -> supernet, and no module imports itself back.

Every import counts: at the top, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("supernet", "proxies", "search", "search.app")  # lowest first


def modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name."""
    out = {}
    for package in ("supernet", "proxies", "search"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` counts a.b when it is a module, else a)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def layer(module: str) -> int:
    return max(i for i, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + "."))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(path, known) - {name} for name, path in known.items()}


def test_no_upward_import(graph) -> None:
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a)]
    assert not upward, f"imports against the layers {' <- '.join(LAYERS)}: {upward}"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_import_cycle(graph) -> None:
    assert not cycles(graph)


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("supernet.build") < layer("proxies.kl") < layer("search.driver") < layer("search.app.run")
    assert layer("search") == layer("search.fitness")


def test_the_graph_holds_the_known_edges(graph) -> None:
    assert "search.fitness" in graph["search.app.run"] or "search.app.inputs" in graph["search.app.run"]
    assert "supernet.levels" in graph["search.mutation"]


def test_every_name_imported_from_the_project_exists() -> None:
    """``from a.b import c``: c is in a.b, in the packages, the benchmarks and launch (which no other test
    imports: a moved function would otherwise surface only when someone runs the benchmark)."""
    import importlib

    missing = []
    for folder in ("supernet", "proxies", "search", "bench", "launch"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                    continue
                if node.module.split(".")[0] not in ("supernet", "proxies", "search", "bench", "launch"):
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    if not hasattr(module, alias.name) and importlib.util.find_spec(submodule) is None:
                        missing.append(f"{path.relative_to(ROOT)}: from {node.module} import {alias.name}")
    assert not missing, missing
