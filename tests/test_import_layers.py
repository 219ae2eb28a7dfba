"""The package's layers, read from the source (ast; nothing is imported).

The arrows point down: models -> tasks -> methods -> decoding -> evaluation -> analysis -> commands
(the CLI, the demo, the benchmarks). So
- nothing in the library layers imports `mentalese.commands`, and `methods` never imports the analysis
  commands (`analysis.soft_commands`, `analysis.codi_probe`), not even inside a function;
- the module-level imports among mentalese modules have no cycle. Imports inside a function are deliberate
  lazy imports and are left out of the cycle check (`python tests/test_import_layers.py` lists them).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "mentalese"
LIBRARY_LAYERS = ("methods", "decoding", "evaluation", "analysis", "models", "tasks")
ANALYSIS_COMMANDS = ("mentalese.analysis.soft_commands", "mentalese.analysis.codi_probe")


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported mentalese module (the most specific one that exists)
    path: str  # file of `source`, relative to the repository
    line: int
    lazy: bool  # inside a function: runs when called, not at import

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} -> {self.target}{' (lazy)' if self.lazy else ''}"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = ("mentalese",) + path.relative_to(PACKAGE_DIR).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportCollector(ast.NodeVisitor):
    """Imported names of one module, each with its line and whether it sits inside a function."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
        self._depth = 0

    def _function(self, node) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # annotations only: never runs
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._depth > 0))

    visit_ImportFrom = visit_Import


def _absolute_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """`name` or its longest prefix that is a module of the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_edges() -> list[Edge]:
    modules = module_files()
    edges = []
    for module, path in modules.items():
        collector = _ImportCollector()
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        rel = str(path.relative_to(PACKAGE_DIR.parents[1]))
        for node, lazy in collector.found:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _absolute_base(module, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for name in targets:
                target = _known(name, modules) if name.split(".")[0] == "mentalese" else None
                if target and target != module:
                    edges.append(Edge(module, target, rel, node.lineno, lazy))
    return sorted(set(edges), key=lambda e: (e.path, e.line, e.target))


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_violations(edges: list[Edge]) -> list[Edge]:
    bad = []
    for e in edges:
        library = any(_inside(e.source, f"mentalese.{layer}") for layer in LIBRARY_LAYERS)
        if library and _inside(e.target, "mentalese.commands"):
            bad.append(e)
        elif _inside(e.source, "mentalese.methods") and any(_inside(e.target, a) for a in ANALYSIS_COMMANDS):
            bad.append(e)
    return bad


def import_cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components (more than one module) of the module-level import graph (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if not e.lazy:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def closes_a_cycle(edge: Edge, edges: list[Edge]) -> bool:
    """Whether `edge.target` imports its way (any import, lazy or not) back to `edge.source`."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
    seen, todo = set(), [edge.target]
    while todo:
        node = todo.pop()
        if node == edge.source:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


def describe_cycle(component: list[str], edges: list[Edge]) -> str:
    members = set(component)
    inner = [str(e) for e in edges if not e.lazy and e.source in members and e.target in members]
    return "cycle among " + ", ".join(component) + ":\n    " + "\n    ".join(inner)


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return import_edges()


def test_the_reader_sees_every_module(edges):
    modules = module_files()
    assert "mentalese.methods.sft" in modules and "mentalese.methods.codi" in modules  # package __init__
    assert any(e.source == "mentalese.methods.sft" and e.target == "mentalese.errors" for e in edges)


def test_relative_and_from_imports_resolve_to_modules():
    modules = {"mentalese.a": Path("a/__init__.py"), "mentalese.a.b": Path("a/b.py"), "mentalese.a.c": Path("c.py")}
    node = ast.parse("from . import b").body[0]
    assert _absolute_base("mentalese.a.c", False, node) == "mentalese.a"
    assert _absolute_base("mentalese.a", True, ast.parse("from .b import x").body[0]) == "mentalese.a.b"
    assert _known("mentalese.a.b.x", modules) == "mentalese.a.b" and _known("numpy", modules) is None


def test_cycle_finder_on_a_small_graph():
    e = [Edge("m.a", "m.b", "a.py", 1, False), Edge("m.b", "m.a", "b.py", 1, False),
         Edge("m.b", "m.c", "b.py", 2, False), Edge("m.c", "m.b", "c.py", 1, True)]  # lazy: not a cycle
    assert import_cycles(e) == [["m.a", "m.b"]]


def test_library_layers_never_import_the_commands(edges):
    bad = layer_violations(edges)
    if bad:
        pytest.fail("imports that reach up into the commands:\n" + "\n".join(map(str, bad)), pytrace=False)


def test_no_module_level_import_cycles(edges):
    cycles = import_cycles(edges)
    if cycles:
        pytest.fail("\n".join(describe_cycle(c, edges) for c in cycles), pytrace=False)


if __name__ == "__main__":  # the report: violations, cycles, and every lazy import
    all_edges = import_edges()
    print("layer violations:", *map(str, layer_violations(all_edges)) or ["none"], sep="\n  ")
    print("module-level cycles:", *[describe_cycle(c, all_edges) for c in import_cycles(all_edges)] or ["none"],
          sep="\n  ")
    lazy = [e for e in all_edges if e.lazy]
    print(f"lazy imports ({len(lazy)}); * = it breaks a cycle (the target imports its way back):",
          *[("* " if closes_a_cycle(e, all_edges) else "  ") + str(e) for e in lazy], sep="\n  ")
