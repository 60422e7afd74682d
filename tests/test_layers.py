"""The package's import graph: no cycles, and layers that only point down.

Every ``import`` statement counts (module level, inside functions, and under ``if TYPE_CHECKING:``), so a
cycle cannot hide behind a lazy import. Layers, bottom to top: the leaves (errors, _compat, registry,
schema, ops), config, data/losses/models/optim, the engine (loop, hook contract, checkpoints), methods,
label quality, deployment, compression, and the composition root ``pipeline/`` with the CLI on top.
"""

from __future__ import annotations

import ast
import os

import pytest

PKG = "robust_paddle"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PKG)

#: modules that may import nothing from the package except each other
LEAVES = {"robust_paddle.errors", "robust_paddle._compat", "robust_paddle.registry", "robust_paddle.schema",
          "robust_paddle.ops"}
#: what the engine may import besides itself: it runs the loop over data and never reaches above
ENGINE_MAY_IMPORT = LEAVES | {"robust_paddle.config", "robust_paddle.data"}
#: the only modules outside ``pipeline/`` that may import it (entry points and the lazy public API)
PIPELINE_USERS = {"robust_paddle", "robust_paddle.cli", "robust_paddle.api"}


def module_files(root: str = ROOT) -> dict[str, str]:
    """``{dotted module name: path}`` of every module of the package (a package is its ``__init__``)."""
    out = {}
    base = os.path.dirname(os.path.normpath(root))
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
                out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``; a package re-exporting its own submodules is its
    face, not a dependency, and importing the package root (``robust_paddle``) is not counted."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != mod and name != PKG and not (is_pkg and name.startswith(mod + ".")):
                    graph[mod].add(name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _in(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_files())


def test_cycle_finder_sees_a_cycle_through_a_lazy_import(tmp_path):
    pkg = tmp_path / PKG
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from robust_paddle.sub import a  # the package's face\n")
    (pkg / "sub" / "a.py").write_text("from robust_paddle.sub.b import x\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .a import y\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from robust_paddle.sub import b\n")
    g = import_graph(module_files(str(pkg)))
    assert g["robust_paddle.sub"] == set()
    assert g["robust_paddle.c"] == {"robust_paddle.sub", "robust_paddle.sub.b"}
    assert find_cycles(g) == [["robust_paddle.sub.a", "robust_paddle.sub.b"]]


def test_no_import_cycles(graph):
    assert find_cycles(graph) == []


def test_leaves_import_only_leaves(graph):
    bad = {m: sorted(d - LEAVES) for m, d in graph.items() if m in LEAVES and d - LEAVES}
    assert bad == {}


def test_engine_imports_nothing_above_it(graph):
    bad = {m: sorted(d for d in deps if not _in(d, ENGINE_MAY_IMPORT | {"robust_paddle.engine"}))
           for m, deps in graph.items() if _in(m, {"robust_paddle.engine"})}
    assert {m: d for m, d in bad.items() if d} == {}


def test_only_entry_points_import_the_composition_root(graph):
    bad = {m: sorted(d for d in deps if _in(d, {"robust_paddle.pipeline"}))
           for m, deps in graph.items() if not _in(m, {"robust_paddle.pipeline"} | PIPELINE_USERS)}
    assert {m: d for m, d in bad.items() if d} == {}
