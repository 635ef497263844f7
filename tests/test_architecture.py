"""The package's layers: every import inside ``src/equivar`` points down, and no modules import
each other in a circle.

The layer order is written once, in :data:`LAYERS`. Imports are read from the source (module-level
and function-local alike, ``TYPE_CHECKING`` blocks excepted: they never run), so a new upward
import or a new circle fails here before it reaches a release.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "equivar"

#: The layers from the bottom up; a module may import its own unit's modules (without a
#: circle) and any layer below, never one above. Units of one layer are peers that must not
#: import one another: the three tasks stand beside each other. ``testing`` (the public
#: assertions and the equivariance measurement they are built on) sits below the tasks, so
#: training can log the measurement; no layer below it uses it.
LAYERS: list[set[str]] = [
    {"equivar.keys", "equivar._suggest", "equivar._lazy", "equivar._allocator", "equivar.cache",
     "equivar.configfile", "equivar.atomic", "equivar._version", "equivar.typedconfig",
     "equivar.dtypes", "equivar.parallel"},
    {"equivar.kernels"},
    {"equivar.symmetry"},
    {"equivar.data"},
    {"equivar.nn"},
    {"equivar.heads"},
    {"equivar.models"},
    {"equivar.testing"},
    {"equivar.train", "equivar.simulate", "equivar.qmc"},
    {"equivar.cli", "equivar.__main__", "equivar"},
]  # fmt: skip


def _layer(module: str) -> tuple[int, str]:
    """``(layer index, unit)``: the unit is the subpackage (``equivar.data``) or the top-level
    module a module belongs to."""
    parts = module.split(".")
    unit = ".".join(parts[:2]) if len(parts) > 1 else module
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index, unit
    raise AssertionError(f"{module}: its unit {unit!r} is in no layer of LAYERS; add it")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports() -> dict[str, set[str]]:
    """``{module: {imported equivar modules}}`` over every file of ``src/equivar``; ``from
    package import name`` counts as importing ``package.name`` when that is a module."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and _is_type_checking(node) for n in ast.walk(node)}  # fmt: skip
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("equivar")}
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path, node)
                if not base.startswith("equivar"):
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[module] = {t for t in targets if t != module}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a higher layer, or of a peer unit of the same layer."""
    bad = []
    for module, targets in sorted(graph.items()):
        here, unit = _layer(module)
        for target in sorted(targets):
            there, other = _layer(target)
            if there > here or (there == here and other != unit and here > 0):
                if module == "equivar" or unit in ("equivar.cli", "equivar.__main__"):
                    continue  # the package root re-exports and the CLI edge call anything
                bad.append(f"{module} -> {target}")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan), each a circle of imports. A package's
    ``__init__`` re-exporting its own modules is not counted: a module may import from its
    own package's ``__init__`` only if that is not a circle, so the edges are kept as read."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package_init_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without edges from a package's ``__init__`` to its own modules (re-exports,
    which make every ``from equivar.data import x`` inside the package look like a circle)."""
    out = {}
    for module, targets in graph.items():
        is_package = (SRC.parent / Path(*module.split(".")) / "__init__.py").exists()
        out[module] = {t for t in targets
                       if not (is_package and t.startswith(module + "."))}  # fmt: skip
    return out


def test_every_import_points_down():
    bad = upward_imports(imports())
    assert not bad, "imports that point up a layer or across to a peer:\n" + "\n".join(bad)


def test_no_modules_import_each_other_in_a_circle():
    found = circles(_package_init_edges(imports()))
    assert not found, "circles of imports:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("source,expected", [
    ("from ..data import io", "equivar.data.io"),
    ("from . import scatter", "equivar.nn.scatter"),
    ("import equivar.kernels.dispatch", "equivar.kernels.dispatch"),
])  # fmt: skip
def test_the_reader_resolves_relative_and_absolute_imports(source, expected):
    node = ast.parse(source).body[0]
    if isinstance(node, ast.Import):
        assert node.names[0].name == expected
        return
    module = _resolve("equivar.nn.conv", SRC / "nn" / "conv.py", node)
    assert f"{module}.{node.names[0].name}" == expected


#: the size limits of one concept per file (issue 27)
MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 120


def test_no_source_file_is_longer_than_the_limit():
    long = {str(p.relative_to(SRC)): n for p in sorted(SRC.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_is_longer_than_the_limit():
    """From ``def`` (decorators excluded) to its last line, docstring included."""
    long = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(SRC)}:{node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_module_imports_another_modules_private_names():
    """``from equivar.x import _name`` couples a module to another's internals: a name two
    modules share is public in its home."""
    found = []
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    for module, path in sorted(modules.items()):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(module, path, node)
                if base.startswith("equivar") and base != module:
                    found += [f"{module}: from {base} import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, "private names imported across modules:\n" + "\n".join(found)
