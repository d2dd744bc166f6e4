"""The layers run one way: no import circle (function-level imports included), the core imports
nothing of the package outside the core, and no private name crosses a module boundary."""

from __future__ import annotations

import ast
from pathlib import Path

import mm4lmm_jax

ROOT = Path(mm4lmm_jax.__file__).resolve().parent
PACKAGE = "mm4lmm_jax"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import of the package in ``path`` (any depth): (target module, names imported)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == PACKAGE:
                out.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names if a.name.split(".")[0] == PACKAGE)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, names in _imports(path):
            for sub in names:  # "from . import x" imports the module x
                if f"{target}.{sub}" in modules:
                    graph[name].add(f"{target}.{sub}")
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    assert _cycles(_graph()) == []


def test_the_core_imports_only_the_core():
    outside = {
        (m, t)
        for m, targets in _graph().items()
        if m.startswith(f"{PACKAGE}.core")
        for t in targets
        if not t.startswith(f"{PACKAGE}.core")
    }
    assert outside == set()


def test_no_private_name_imported_across_modules():
    crossing = []
    for path in ROOT.rglob("*.py"):
        for target, names in _imports(path):
            crossing += [
                f"{_module_name(path)}: {target}.{n}" for n in names if n.startswith("_") and not n.endswith("__")
            ]
    assert crossing == []


def test_the_checker_sees_a_circle_and_a_private_import(tmp_path):
    """The checks above can fail: a made-up circle is found."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
