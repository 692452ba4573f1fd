"""The import graph of each package has no cycle: every ``import`` statement of every module
(module level or inside a function) is an edge to the module it names; a cycle fails the test
with the modules on it. Imports under ``if TYPE_CHECKING:`` never run, and are not edges
(annotations may name a module that imports this one).

Edges: ``import a.b.c`` and ``from a.b import c`` (when ``a.b.c`` is a module) point to
``a.b.c``; ``from a.b import name`` points to ``a.b``; relative imports are resolved. The
implicit import of a parent package (``a.b.c`` runs ``a/b/__init__.py`` first) is not an edge,
so a package's ``__init__`` may re-export its submodules; a submodule importing from its own
package's ``__init__`` is a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_names(package: str) -> dict[str, Path]:
    """Every module of ``package`` (dotted name -> file), packages by their ``__init__``."""
    base = ROOT / package
    out = {}
    for file in sorted(base.rglob("*.py")):
        parts = list(file.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = file
    return out


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return out


def imports_of(module: str, file: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` imports at run time, anywhere in its source."""
    tree = ast.parse(file.read_text(), str(file))
    is_package = file.name == "__init__.py"
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(module, is_package, node.level, node.module)
            sub = [f"{src}.{alias.name}" for alias in node.names]
            names = [s for s in sub if s in known] or [src]
        else:
            continue
        for name in names:
            # the longest known module the name refers to (``import a.b.c`` names ``a.b.c``)
            parts = name.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts and ".".join(parts) != module:
                found.add(".".join(parts))
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def graph_of(package: str) -> dict[str, set[str]]:
    modules = module_names(package)
    known = set(modules)
    return {name: imports_of(name, file, known) for name, file in modules.items()}


@pytest.mark.parametrize("package", ["twins", "gravwave", "hydrology"])
def test_no_import_cycle(package: str) -> None:
    cycle = find_cycle(graph_of(package))
    assert cycle is None, f"import cycle in {package}: {' -> '.join(cycle or [])}"


def test_the_walker_sees_cycles_through_functions_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: a cycle closed by an import inside a function, or by a relative
    import, is found; a package re-exporting its submodules is not a cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("from pkg.sub import b\nA = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import C\n")
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import C\n"
    (pkg / "d.py").write_text(typing_only)
    (pkg / "c.py").write_text("import pkg.a\nC = 2\n")
    modules = {
        "pkg": pkg / "__init__.py",
        "pkg.a": pkg / "a.py",
        "pkg.sub": pkg / "sub" / "__init__.py",
        "pkg.sub.b": pkg / "sub" / "b.py",
        "pkg.c": pkg / "c.py",
        "pkg.d": pkg / "d.py",
    }
    graph = {m: imports_of(m, f, set(modules)) for m, f in modules.items()}
    assert graph["pkg"] == {"pkg.a"} and graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.d"] == set()  # a type-only import never runs
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("C = 2\n")
    graph["pkg.c"] = imports_of("pkg.c", pkg / "c.py", set(modules))
    assert find_cycle(graph) is None
