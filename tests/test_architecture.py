"""The package's shape (STYLE.md): no import cycle, nothing imports upward, small modules and functions.

`python -m pytest tests/test_architecture.py` checks it; the graph is read from the source (every
`import` anywhere in a module, lazy ones inside functions included), so it needs no import.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
#: the orchestration: it may import the library, never the other way round
ORCHESTRATION = ("recranker.stages", "recranker.config", "recranker.runs", "recranker.cli", "recranker.serve")
LIBRARY = ("recranker.data", "recranker.split", "recranker.retrieval", "recranker.candidates", "recranker.sampling",
           "recranker.hints", "recranker.prompts", "recranker.tuning", "recranker.ranking", "recranker.metrics",
           "recranker.report", "recranker.results", "recranker.settings", "recranker.types", "recranker.artifacts",
           "recranker.assets", "recranker.errors", "recranker.testing", "recranker.arms")


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


def test_the_packages_have_no_import_cycle() -> None:
    """Modules grouped by their top package (`recranker.prompts`, `recranker.split`...): no two
    packages import each other, even through different modules."""
    packages: dict[str, set[str]] = {}
    for name, targets in graph().items():
        top = ".".join(name.split(".")[:2])
        packages.setdefault(top, set()).update(".".join(t.split(".")[:2]) for t in targets)
    edges = {top: {t for t in targets if t != top and t in packages} for top, targets in packages.items()}
    assert cycles(edges) == []


def test_the_library_never_imports_the_orchestration() -> None:
    upward = sorted((name, target) for name, targets in graph().items() for target in targets
                    if name.startswith(LIBRARY) and target.startswith(ORCHESTRATION))
    assert upward == []


def test_the_server_never_imports_the_stages() -> None:
    """serve/ reads a finished run through `recranker.runs` and builds its ranker through the config
    (`StudyConfig.llm_ranker`), the path the stages use: it never reaches into the stages."""
    reached = sorted((name, target) for name, targets in graph().items() for target in targets
                     if name.startswith("recranker.serve") and target.startswith("recranker.stages"))
    assert reached == []


#: the arms' names (`recranker.arms.Arm`), which only the arms' table may spell out
ARM_NAMES = {"tuned", "no_hints", "zero_shot"}


def arm_name_lines(source: str) -> list[int]:
    """Lines of `source` that compare (==, !=, in, not in) with an arm's name as a string literal,
    alone or inside a literal tuple, list or set."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            literals = [c for o in operands for c in ([o] if isinstance(o, ast.Constant) else getattr(o, "elts", []))]
            if any(isinstance(c, ast.Constant) and c.value in ARM_NAMES for c in literals):
                lines.append(node.lineno)
    return lines


def arm_name_comparisons() -> list[str]:
    """module:line of every comparison with an arm's name outside `recranker.arms` (where
    the one table of what each arm means lives)."""
    return [f"{name}:{line}" for name, path in sorted(modules_of_the_package().items())
            if name != "recranker.arms" for line in arm_name_lines(path.read_text(encoding="utf-8"))]


def test_no_code_compares_arm_names_outside_the_arms_table() -> None:
    assert arm_name_comparisons() == []


def test_the_arm_name_finder_finds_comparisons() -> None:
    source = 'if system == "tuned":\n    pass\nok = arm not in ("x", "no_hints")\nfine = {"tuned": 1}\n'
    assert arm_name_lines(source) == [1, 3]


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
