"""No import circle in ``src/studylib``: a test over the graph of every import statement.

Every ``import`` and ``from ... import`` of every module counts, at module level or inside a
function (a lazy import is still a dependency; only ``if TYPE_CHECKING:`` blocks are left out).
An edge goes to the deepest studylib module the statement names: ``from studylib.sweep import
store`` is an edge to ``studylib.sweep.store``, ``from studylib.sweep.grid import Config`` one to
``studylib.sweep.grid`` (not to the package ``studylib.sweep``, whose ``__init__`` Python runs
first: counting that would make every package that re-exports its submodules a circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, package: str) -> list[str]:
    """The dotted names each import statement of ``tree`` names (``from a import b`` -> ``a.b``
    and ``a``: the caller keeps the deepest that is a module)."""
    names: list[str] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names += [f"{base}.{alias.name}" for alias in node.names]
        todo.extend(ast.iter_child_nodes(node))
    return names


def import_graph() -> dict[str, set[str]]:
    """studylib module -> the studylib modules it imports."""
    files = {_module_name(p): p for p in sorted((SRC / "studylib").rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for dotted in _imports(ast.parse(path.read_text(), str(path)), package):
            parts = dotted.split(".")
            for end in range(len(parts), 0, -1):  # the deepest prefix that is a studylib module
                if ".".join(parts[:end]) in files:
                    targets.add(".".join(parts[:end]))
                    break
        graph[name] = targets - {name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_graph_sees_the_imports_it_must():
    graph = import_graph()
    assert "studylib.sweep.store" in graph["studylib.sweep.run"]
    assert "studylib.sweep.grid" in graph["studylib.sweep.validate"]


def test_find_cycles_finds_a_circle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_src():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles in src/studylib: " + "; ".join(" <-> ".join(c) for c in cycles)
