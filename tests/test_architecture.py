"""The package's shape (STYLE.md): no import cycle, nothing imports upward, small modules and functions.

`python -m pytest tests/test_architecture.py` checks it; the graph is read from the source (every
`import` anywhere in a module, lazy ones inside functions included), so it needs no import.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
#: the orchestration: it may import the library, never the other way round
ORCHESTRATION = ("recranker.stages", "recranker.config", "recranker.cli", "recranker.serve")
LIBRARY = ("recranker.data", "recranker.split", "recranker.retrieval", "recranker.candidates", "recranker.sampling",
           "recranker.hints", "recranker.prompts", "recranker.tuning", "recranker.ranking", "recranker.metrics",
           "recranker.report", "recranker.results", "recranker.settings", "recranker.types", "recranker.artifacts",
           "recranker.assets", "recranker.errors", "recranker.testing")


def modules_of_the_package() -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    out = {}
    for path in sorted((SRC / "recranker").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports (a `from a import b` of a submodule b
    counts as importing a.b)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules_of_the_package()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_library_never_imports_the_orchestration() -> None:
    upward = sorted((name, target) for name, targets in graph().items() for target in targets
                    if name.startswith(LIBRARY) and target.startswith(ORCHESTRATION))
    assert upward == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def sizes() -> tuple[dict[str, int], dict[str, int]]:
    """Lines of every module, and of every function (decorators to last line) by module:line name."""
    modules, functions = {}, {}
    for name, path in sorted(modules_of_the_package().items()):
        text = path.read_text(encoding="utf-8")
        modules[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                functions[f"{name}:{node.lineno} {node.name}"] = node.end_lineno - start + 1
    return modules, functions


def test_modules_and_functions_stay_small() -> None:
    """STYLE.md's sizes, with a margin: modules under ~400 lines, functions under ~50."""
    modules, functions = sizes()
    assert {name: n for name, n in modules.items() if n > 420} == {}
    assert {name: n for name, n in functions.items() if n > 55} == {}
