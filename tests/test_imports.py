"""Every module imports first, on its own: an import cycle shows only when a module on it is the first one a user
imports (`import trainguard.data.pairs`). The modules that import each other in a ring (found from their
module-level imports) are each imported into an interpreter that holds no other trainguard module; third-party
libraries stay loaded, so the check takes seconds. The ring finder is checked on a known ring."""

import ast
import subprocess
import sys
from pathlib import Path

import trainguard

CHECK = """
import importlib, sys, traceback
import torch, transformers, pydantic, accelerate, peft  # noqa: F401  (loaded once; they are not under test)
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "trainguard" or m.startswith("trainguard.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed))
"""


def module_imports(root: Path) -> dict[str, set[str]]:
    """Each trainguard module and the trainguard modules (with their parent packages) it imports while it loads,
    i.e. outside function bodies."""
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        name = ".".join(("trainguard", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        found: set[str] = set()
        stack: list[ast.AST] = [ast.parse(path.read_text())]
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            stack.extend(ast.iter_child_nodes(node))
        parents = {".".join(m.split(".")[:k]) for m in found for k in range(2, m.count(".") + 2)}
        graph[name] = {m for m in found | parents if m.startswith("trainguard.") and m != name}
    return {k: v & graph.keys() for k, v in graph.items()}


def in_rings(graph: dict[str, set[str]]) -> set[str]:
    """The modules on some import ring: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: set[str] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            ring = []
            while (w := stack.pop()) != v:
                ring.append(w)
            out.update([*ring, v] if ring else [])

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_ring_finder_finds_a_ring_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert in_rings(graph) == {"a", "b", "c"}


def test_every_module_on_an_import_ring_imports_first():
    graph = module_imports(Path(trainguard.__file__).parent)
    assert len(graph) > 100 and "trainguard.models" in graph["trainguard.models.spiking"]
    names = sorted(in_rings(graph))
    out = subprocess.run([sys.executable, "-c", CHECK, *names], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", out.stdout
