"""No import cycle inside solverzoo, counting imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import solverzoo

ROOT = Path(solverzoo.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The solverzoo modules ``name`` imports anywhere in its file (module level or in a function).
    ``from . import x`` counts as importing the submodule x when x is one."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [stem] + [f"{stem}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name inside a module: the module itself
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: _imports(path, name, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_graph_sees_function_level_imports():
    """The walker counts an import inside a function (the kind that hid the sampling cycle)."""
    graph = import_graph()
    assert "solverzoo.sampling" in graph["solverzoo"]
    assert "solverzoo.solvers.base" in graph["solverzoo.sampling"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_solverzoo():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_solvers_never_import_sampling():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("solverzoo.solvers") or name.startswith("solverzoo.preconditioners"):
            assert "solverzoo.sampling" not in targets and "solverzoo" not in targets, name
