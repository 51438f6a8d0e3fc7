"""The house's shape: no import cycles among the modules of tinyml/, codegen/ and sim/.

A cycle means two rooms know about each other, so neither can be read,
tested or replaced alone. Imports under `if TYPE_CHECKING:` are type hints
only and do not count; imports inside functions do (deferring an import
hides a cycle, it does not remove it).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Installed package name of each source folder (pyproject.toml's package-dir).
FOLDERS = {"tinyml": ROOT / "tinyml", "tinyml.codegen": ROOT / "codegen", "tinyml.sim": ROOT / "sim"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (the most specific module each statement names)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[:len(package) - child.level + 1] + ([base] if base else []))
                out.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in out if m in known and m != name}


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.add(frozenset(component))
    return found


def test_cycle_finder_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}
    assert cycles({"a": {"b"}, "b": set()}) == set()


def test_imports_find_the_project_modules() -> None:
    known = modules()
    assert {"tinyml.ops.base", "tinyml.codegen.emit", "tinyml.sim.host", "tinyml.schedule.patches"} <= set(known)
    memory = imported("tinyml.schedule.memory", known["tinyml.schedule.memory"], known)
    assert {"tinyml.ir", "tinyml.schedule.order"} <= memory
    deferred = imported("tinyml.pipeline", known["tinyml.pipeline"], known)
    assert "tinyml.passes.legalize" in deferred  # imported inside load_graph
    # ops/base.py names the emitter's context only under TYPE_CHECKING
    assert "tinyml.codegen.context" not in imported("tinyml.ops.base", known["tinyml.ops.base"], known)


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: imported(name, path, known) for name, path in known.items()}
    found = [sorted(c) for c in cycles(graph)]
    assert not found, f"modules that import each other: {found}"
