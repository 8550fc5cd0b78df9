"""The package's import graph has no cycles: a module's imports never lead back to it, not
even through an import inside a function (that made import order matter: issue 14 found
interactive.classic <-> interactive.refine and io.volume <-> io.orientation)."""

from __future__ import annotations

import ast
from pathlib import Path

import napari_tumorseg

ROOT = Path(napari_tumorseg.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules ``name`` imports at run time, function bodies included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("napari_tumorseg"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in known and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative enough here)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules():
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = _imports(name, path, set(mods))
        # A package's __init__ re-exporting its own submodules, and those submodules naming
        # a sibling through the package, is how Python packages work, not a cycle between modules.
        graph[name] = {d for d in deps if not (path.name == "__init__.py" and d.startswith(name + "."))}
    assert _cycles(graph) == []


def test_the_named_cycles_are_gone():
    mods = _modules()
    deps = {n: _imports(n, p, set(mods)) for n, p in mods.items()}
    assert "napari_tumorseg.interactive.classic" not in deps["napari_tumorseg.interactive.refine"]
    assert "napari_tumorseg.io.volume" not in deps["napari_tumorseg.io.orientation"]
    reader = deps["napari_tumorseg._reader"]
    assert not any(m.startswith("napari_tumorseg.widgets") for m in reader)
