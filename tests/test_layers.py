"""The package's modules import only downwards (or sideways within a layer), and never in a cycle.

Every ``import`` counts, also those inside functions (a lazy import that goes upwards is a loop
that waits for the right call). The layers, bottom to top, are in ``LAYERS``; README.md's
"Where a change goes" says the same in words.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "scplaybook"

LAYERS = [
    {"_errors", "_settings", "_counts"},  # facts every module may use
    {"_backend", "_timing", "_gpu"},  # which backend, timing, GPU kernels and memory
    {"_chunks", "_subset", "_dispatch"},  # chunk machinery, subsets, the backend dispatch
    {"io", "get", "datasets", "_figures"},  # reading, writing, host <-> GPU, figures to PNG
    {"pp", "tl", "pl"},  # the analysis steps, each with its in-memory, chunked and CPU variants
    {"_warmup", "_recipe", "_session"},  # the recipe, the session (backend, Dask), warm-up
    {"runner", "_cli", "__main__", ""},  # the runner, the command line, the package itself
]


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for mod, f in mods.items():
        here = mod.split(".") if f.name == "__init__.py" else mod.split(".")[:-1]
        here = [p for p in here if p]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    name = ".".join(base + ([node.module] if node.module else []))
                elif (node.module or "").startswith("scplaybook"):
                    name = node.module.removeprefix("scplaybook").lstrip(".")
                else:
                    continue
                for alias in node.names:
                    full = f"{name}.{alias.name}".lstrip(".")
                    deps.add(full if full in mods else name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "scplaybook":
                        deps.add(alias.name.removeprefix("scplaybook").lstrip("."))
        graph[mod] = {d for d in deps if d in mods and d != mod}
    return graph


def _layer(mod: str) -> int:
    top = mod.split(".")[0]
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{mod} is in no layer: add it to LAYERS (and to README's list)")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_imports_go_downwards():
    upward = [f"{m} -> {d}" for m, deps in _graph().items() for d in deps if _layer(d) > _layer(m)]
    assert upward == []


def test_the_checks_can_fail():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycles(g) == [["a", "b", "c"]]
    assert _layer("pp._qc") > _layer("_chunks") and _layer("runner._run") > _layer("pp")
