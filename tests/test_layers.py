"""Imports go one way: search.app -> search -> proxies -> supernet, and inside supernet variants (the supernet
math) -> space (the allocation space) -> io (model I/O) -> the base (errors, kinds); no module imports itself back.

Every import counts: at the top, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# lowest first; "supernet" is the base every layer reads (supernet.errors, supernet.kinds)
LAYERS = ("supernet", "supernet.io", "supernet.space", "supernet.variants", "proxies", "search", "search.app")


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


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer into a higher one, as ``a -> b``."""
    return [f"{a} -> {b}" for a, targets in sorted(graph.items()) for b in sorted(targets) if layer(b) > layer(a)]


def test_no_upward_import(graph) -> None:
    upward = upward_imports(graph)
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
    chain = ["supernet.kinds", "supernet.io.loading", "supernet.space.grid", "supernet.variants.build", "proxies.kl",
             "search.driver", "search.app.run"]  # fmt: skip
    assert [layer(m) for m in chain] == sorted({layer(m) for m in chain}), "each one layer above the last"
    assert layer("search") == layer("search.fitness")
    assert layer("supernet.io.export.gguf") == layer("supernet.io.adapters.base")
    edges = {  # the space reading the supernet math (budget -> build, as it once did) is the one upward import
        "supernet.space.budget": {"supernet.variants.build", "supernet.io.adapters.base"},
        "supernet.io.export.save": {"supernet.io.files"},
        "supernet.variants.switch": {"supernet.io.export.modeling_strata", "supernet.kinds"},
    }
    assert upward_imports(edges) == ["supernet.space.budget -> supernet.variants.build"]


def test_the_graph_holds_the_known_edges(graph) -> None:
    assert "search.app.inputs" in graph["search.app.run"]
    assert "search.fitness" in graph["search.app.inputs"]
    assert "supernet.space.moves" in graph["search.mutation"]
    assert "supernet.space.grid" in graph["search.app.pipeline"]


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


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_export_imports_nothing_that_imports_the_export(graph) -> None:
    export = [m for m in graph if inside(m, "supernet.io.export")]
    outside = {m for e in export for m in reach(graph, e) if not inside(m, "supernet.io.export")}
    back = sorted(m for m in outside if any(inside(t, "supernet.io.export") for t in graph[m]))
    assert not back, f"imported by the export and importing it: {back}"


def test_the_reference_model_and_the_data_do_not_import_each_other(graph) -> None:
    """data.py reads the built-in corpus (reference/corpus.py); the reference recipe packs its windows with
    windows.py, which reads no reference module, and never reaches data.py."""
    reference = [m for m in graph if inside(m, "supernet.io.reference")]
    assert all("supernet.io.data" not in reach(graph, r) for r in reference)
    assert not any(inside(m, "supernet.io.reference") for m in reach(graph, "supernet.io.windows"))
    assert "supernet.io.reference.corpus" in graph["supernet.io.data"]
