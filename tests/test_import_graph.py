"""Data flows one way: the graph of `insid3.*` imports, read from the sources, has no cycle (imports
under `if TYPE_CHECKING:` and inside functions included: a typing-only cycle is still a knot a
reader must untie), and no module reads another module's private names (`from m import _x`,
`m._x` on an imported insid3 module)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# pyproject's package-dir: folder -> import path
PACKAGES = {"insid3": "insid3", "engine": "insid3.engine", "kernels": "insid3.kernels", "export": "insid3.export",
            "evaluation": "insid3.evaluation", "benchmarks": "insid3.benchmarks"}


def module_files() -> dict[str, Path]:
    """Every module of the package: import name -> file."""
    found = {}
    for folder, prefix in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


def absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute name `from ... import` refers to (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], list[str]]:
    """(the insid3 modules `module` imports anywhere in its file, its reads of their private names)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    targets: set[str] = set()
    private: list[str] = []
    aliases: dict[str, str] = {}  # a local name bound to an insid3 module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    targets.add(alias.name)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = absolute(module, node, path.name == "__init__.py")
            if not source.startswith("insid3"):
                continue
            for alias in node.names:
                child = f"{source}.{alias.name}"
                if child in modules:  # `from package import module`
                    targets.add(child)
                    aliases[alias.asname or alias.name] = child
                elif source in modules:
                    targets.add(source)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append(f"{module} imports {source}.{alias.name}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            private.append(f"{module} reads {aliases[node.value.id]}.{node.attr}")
    targets.discard(module)
    return targets, private


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = module_files()
    graph, private = {}, []
    for module, path in modules.items():
        graph[module], found = imports_of(module, path, modules)
        private += found
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in graph:
                    continue
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_import_cycles_in_the_package():
    graph, _ = import_graph()
    assert len(graph) > 100 and graph["insid3.engine.cli.segment"], "the scan found the package"
    knots = cycles(graph)
    assert knots == [], "import cycles (typing-only and function-level imports count):\n" + "\n".join(
        " <-> ".join(knot) for knot in knots)


def test_no_module_reads_another_modules_private_names():
    _, private = import_graph()
    assert private == [], "\n".join(private)


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_scan_sees_typing_only_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from insid3.engine.runtime.segmenter import Segmenter\n"
        "def f():\n    from insid3.engine.jobs import manifest\n    return manifest._private\n"
        "from insid3.errors import _hidden\n"
    )
    modules = module_files()
    targets, private = imports_of("insid3.engine.cli.fake", source, modules)
    assert {"insid3.engine.runtime.segmenter", "insid3.engine.jobs.manifest", "insid3.errors"} <= targets
    assert private == ["insid3.engine.cli.fake imports insid3.errors._hidden",
                       "insid3.engine.cli.fake reads insid3.engine.jobs.manifest._private"]
    relative = ast.parse("from .arguments import add_bundle\n").body[0]
    assert absolute("insid3.engine.cli.segment", relative, False) == "insid3.engine.cli.arguments"
