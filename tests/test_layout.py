"""The package's layout is kept by tests, not by hand: no import cycle between files (imports
inside functions included), internal imports at module top outside the CLI, and the
import-linter contracts of pyproject.toml (layers that import only downward)."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = "latentatlas"


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for p in (SRC / PKG).rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return mods


def _imports(mods) -> list[tuple[str, str, int, bool]]:
    """(importer, imported module, line, at module top) for every internal import statement."""
    out = []
    for name, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == PKG]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] != PKG:
                    continue
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            else:
                continue
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t != name:
                    out.append((name, t, node.lineno, id(node) in top))
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(comp))
    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_files():
    edges: dict[str, set[str]] = {}
    for a, b, _, _ in _imports(_modules()):
        edges.setdefault(a, set()).add(b)
    assert _cycles(edges) == []


def test_internal_imports_sit_at_module_top_outside_the_cli():
    lazy = [f"{a}:{line} imports {b}" for a, b, line, top in _imports(_modules())
            if not top and not a.startswith(f"{PKG}.cli")]
    assert lazy == []


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    res = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=SRC.parent)
    assert res.returncode == 0, res.stdout[-3000:]


def test_the_report_page_order_names_every_registered_section():
    from latentatlas.report.context import SECTIONS
    from latentatlas.report.sections import ORDER
    assert sorted(ORDER) == sorted(SECTIONS) and len(set(ORDER)) == len(ORDER)
