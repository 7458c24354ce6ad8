"""The layers, as ARCHITECTURE.md draws them: imports only go down, and there is no cycle, in the runtime, in
`export-model` (a second front end on the runtime's lower layers) and in the benchmarks.

Read from the source with `ast` (every import, also those inside functions), so a lazy import cannot hide
an upward edge. `python tests/test_architecture.py` prints the floors and the lines per layer.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "edge_search.runtime"
# folder in the checkout -> the package it is installed as
PACKAGES = {"runtime": PACKAGE, "export": "edge_search.export", "benchmarks": "benchmarks"}
# What export-model may use of the runtime: the contract it writes (bundle, options, files), the engines its
# parity gate runs the graphs through (as the runtime will), and the shell edge both command lines share.
EXPORT_MAY_IMPORT = ("base", "shell", "model")

# Lowest first. A module may import its own layer's modules and those of any lower layer; `model` and
# `store` are one floor apart in name only: neither may import the other (see SIBLINGS).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "options", "files", "host", "locations")),
    ("shell", ("shell",)),
    ("model", ("model",)),
    ("store", ("store",)),
    ("jobs", ("jobs",)),
    ("scale", ("scale",)),
    ("library", ("library", "prewarm")),
    ("serve", ("serve",)),
    ("cli", ("cli", "__main__", "__init__")),
]
SIBLINGS = {("store", "model"), ("model", "store")}


def module_name(path: Path) -> str:
    folder, *parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join([PACKAGES[folder], *parts])


def layer_of(module: str) -> str:
    head = module[len(PACKAGE) + 1 :].split(".")[0] if module != PACKAGE else "__init__"
    for name, heads in LAYERS:
        if head in heads:
            return name
    raise AssertionError(f"{module} belongs to no layer: add its folder to LAYERS and ARCHITECTURE.md")


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _absolute(node: ast.ImportFrom, importer: str, *, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = importer.split(".")
    base = parts[: len(parts) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def import_graph(
    runtime_only_at_run_time: bool = False, folders: tuple[str, ...] = ("runtime",)
) -> dict[str, set[str]]:
    """Each module of `folders` -> the modules of `folders` it imports (`runtime_only_at_run_time`: without the
    imports under `if TYPE_CHECKING`, which do not run)."""
    modules = {module_name(p): p for folder in folders for p in (ROOT / folder).rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_lines(tree) if runtime_only_at_run_time else set()
        graph[name]  # every module is a node, importing or not
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, is_package=path.name == "__init__.py")
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                # `from package import submodule` is an edge to the submodule, not to the package's __init__
                targets = submodules if any(m in modules for m in submodules) else [base]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return dict(graph)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return found


def floors(graph: dict[str, set[str]]) -> int:
    """The longest chain of imports (a module importing nothing is floor 1)."""
    depth: dict[str, int] = {}

    def of(node: str, seen: frozenset[str]) -> int:
        if node not in depth:
            below = [of(n, seen | {node}) for n in graph.get(node, ()) if n not in seen]
            depth[node] = 1 + max(below, default=0)
        return depth[node]

    return max(of(node, frozenset()) for node in graph)


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    rank = {name: position for position, (name, _) in enumerate(LAYERS)}
    bad = []
    for source, targets in graph.items():
        for target in targets:
            a, b = layer_of(source), layer_of(target)
            if rank[b] > rank[a] or (a, b) in SIBLINGS:
                bad.append(f"{source} ({a}) imports {target} ({b})")
    return sorted(bad)


def test_every_runtime_module_belongs_to_a_layer():
    for module in import_graph():
        layer_of(module)


def test_imports_only_go_down_the_layers():
    assert upward_edges(import_graph()) == []


def test_no_import_cycle():
    assert cycles(import_graph(runtime_only_at_run_time=True)) == []
    assert cycles(import_graph()) == []  # not even one that typing alone would close


EVERYTHING = tuple(PACKAGES)


def test_export_model_uses_only_the_runtimes_contract_engines_and_shell_edge():
    bad = [
        f"{source} imports {target} ({layer_of(target)})"
        for source, targets in import_graph(folders=EVERYTHING).items()
        if source.startswith(PACKAGES["export"])
        for target in targets
        if target.startswith(PACKAGE) and layer_of(target) not in EXPORT_MAY_IMPORT
    ]
    assert bad == []


def test_nothing_below_the_benchmarks_imports_them_and_the_runtime_never_imports_export():
    for source, targets in import_graph(folders=EVERYTHING).items():
        if not source.startswith("benchmarks"):
            assert not any(t.startswith("benchmarks") for t in targets), source
        if source.startswith(PACKAGE):
            assert not any(t.startswith(PACKAGES["export"]) for t in targets), source


def test_no_import_cycle_in_export_or_the_benchmarks():
    assert cycles(import_graph(folders=EVERYTHING)) == []


def test_the_store_knows_nothing_of_onnxruntime_sessions_or_models():
    for module, targets in import_graph().items():
        if layer_of(module) == "store":
            assert not any(layer_of(t) == "model" for t in targets), module


if __name__ == "__main__":
    graph = import_graph()
    print(
        f"modules {len(graph)}, floors {floors(import_graph(runtime_only_at_run_time=True))} (imports that run), "
        f"cycles {cycles(graph)}, upward edges {len(upward_edges(graph))}"
    )
    lines: dict[str, int] = defaultdict(int)
    for path in (ROOT / "runtime").rglob("*.py"):
        lines[layer_of(module_name(path))] += len(path.read_text().splitlines())
    print("lines per layer:", ", ".join(f"{name} {lines[name]}" for name, _ in LAYERS))
