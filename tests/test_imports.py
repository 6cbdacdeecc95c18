"""The house's import rules: no import cycle (not at module level, not hidden in a function's lazy import, not
even through type-only imports); the consumer (``mtssl/``) never imports the producer (``pipelines/``), and the
contract imports neither torch nor ray nor the producer, whatever the depth or form of the import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mtssl", "pipelines")


def module_files() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def runtime_nodes(tree: ast.AST):
    """Every node that runs: all but the bodies of ``if TYPE_CHECKING:`` (type-only imports)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            yield from (n for branch in node.orelse for n in [branch, *runtime_nodes(branch)])
            continue
        yield node
        yield from runtime_nodes(node)


def import_graph(type_only: bool = False) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body, lazy imports included, type-only ones
    only with ``type_only`` (``from a import b`` counts a.b if that is a module)."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        targets = set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree) if type_only else runtime_nodes(tree):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


IMPORT_CALLS = {"import_module", "__import__"}  # importlib.import_module("a.b"), __import__("a.b")


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) of every import anywhere in ``tree``: module level, inside functions, under ``if
    TYPE_CHECKING:``, and ``importlib.import_module``/``__import__`` calls with a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if called in IMPORT_CALLS and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def forbidden_imports(files: dict[str, str], banned: tuple[str, ...]) -> list[str]:
    """``file:line imports module`` for each import of a ``banned`` package (or a module under it) in ``files``
    (name -> source)."""
    found = []
    for name, source in sorted(files.items()):
        for line, module in sorted(imported_modules(ast.parse(source))):
            if any(module == b or module.startswith(f"{b}.") for b in banned):
                found.append(f"{name}:{line} imports {module}")
    return found


def sources_under(folder: str) -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / folder).rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep, [*path, dep])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_graph_is_read():
    graph = import_graph()
    assert "pipelines.recipes.motion" in graph["pipelines.recipes"]
    assert "mtssl.contract" in graph["pipelines.shardjob"]


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_even_through_type_only_imports():
    assert find_cycle(import_graph(type_only=True)) is None


def test_the_consumer_never_imports_the_producer():
    """The declared boundary is the producer's CLI run as a subprocess (``python -m pipelines.cli``: the demo,
    the flow scoring of ``mtssl-eval motion``); what both halves need lives in ``mtssl/contract/``."""
    assert forbidden_imports(sources_under("mtssl"), ("pipelines",)) == []


def test_only_the_sweep_imports_ray_in_the_consumer():
    """The trainer, model and evaluation run without Ray; ``mtssl-sweep`` schedules whole runs on it."""
    sweep = str(Path("mtssl") / "sweep")
    outside = {path: text for path, text in sources_under("mtssl").items() if not str(path).startswith(sweep)}
    assert forbidden_imports(outside, ("ray",)) == []
    assert forbidden_imports(sources_under("mtssl/sweep"), ("ray",)) != []  # the check reads the sweep's imports


def test_the_contract_imports_neither_torch_nor_ray_nor_the_producer():
    assert forbidden_imports(sources_under("mtssl/contract"), ("torch", "ray", "pipelines")) == []


def test_a_forbidden_import_is_found_at_any_depth_and_in_any_form():
    source = """
import os
from typing import TYPE_CHECKING
import pipelines
if TYPE_CHECKING:
    from pipelines.videos import Frame
def lazy():
    import importlib
    from pipelines.motion import score
    importlib.import_module("pipelines.cli")
    return __import__("pipelines"), import_module("pipelinesque"), "pipelines.cli"
"""
    assert forbidden_imports({"m.py": source}, ("pipelines",)) == [
        "m.py:4 imports pipelines",
        "m.py:6 imports pipelines.videos",
        "m.py:9 imports pipelines.motion",
        "m.py:10 imports pipelines.cli",
        "m.py:11 imports pipelines",
    ]
