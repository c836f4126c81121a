"""The floors of the framework, kept by reading its source (no import needed).

Run alone: ``.venv/bin/pytest tests/agentflow/test_layers.py -q``. A module imports only
from its own floor or below, nothing imports in a cycle, imports sit at the top of the
file (a function-level one only with a comment saying why, e.g. measured start-up cost),
and no module of the framework imports ``graphs``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "agentflow"

FLOORS: list[tuple[str, tuple[str, ...]]] = [
    (
        "core",
        (
            "agentflow._money_words",
            "agentflow.call_reading",
            "agentflow.consequence",
            "agentflow.decision",
            "agentflow.errors",
            "agentflow.examples",
            "agentflow.extraction",
            "agentflow.inputs",
            "agentflow.money",
            "agentflow.recording",
            "agentflow.settings",
            "agentflow.signing",
            "agentflow.state",
            "agentflow.tracing",
        ),
    ),
    (
        "models",
        (
            "agentflow.models",
            "agentflow.acceptance",
            "agentflow.evaluation",
            "agentflow.extraction_eval",
        ),
    ),
    ("tools, checkpoints", ("agentflow.tools", "agentflow.checkpoints")),
    ("nodes", ("agentflow.nodes",)),
    (
        "assembly",
        (
            "agentflow.builder",
            "agentflow.graph_module",
            "agentflow.heads",
            "agentflow.integrity",
            "agentflow.report",
            "agentflow.retrain",
            "agentflow.review",
            "agentflow.runtime",
            "agentflow._training_rows",
        ),
    ),
    ("faces", ("agentflow.cli", "agentflow.server", "agentflow.benchmarks")),
]
"""Lowest first. The package's ``__init__`` (the public API) sits above them all."""


@dataclass(frozen=True)
class Import:
    """One import of a framework module by another."""

    source: str
    target: str
    line: int
    top: bool
    """At module level (``if TYPE_CHECKING:`` blocks count as top: they run no code)."""
    typing_only: bool
    reason: bool
    """A comment on the line or the one above says why it is not at the top."""


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    # agentflow/nodes, tools and checkpoints are links to the top-level folders, which
    # rglob does not follow: walk those folders as the subpackages they are installed as.
    trees = [PACKAGE, *(ROOT / name for name in ("nodes", "tools", "checkpoints"))]
    for path in (p for tree in trees for p in tree.rglob("*.py")):
        if "migrations" in path.parts and path.name != "__init__.py":
            continue  # Alembic's env and revisions are run by Alembic, not imported
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[0] != "agentflow":
            parts.insert(0, "agentflow")
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _floor(module: str) -> int:
    if module == "agentflow":
        return len(FLOORS)
    for index, (_, prefixes) in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is on no floor: add it to FLOORS in {__file__}")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        out = []
        for name in names:
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in modules and name != module:
                out.append(name)
        return out

    def reason(lineno: int) -> bool:
        here = lines[lineno - 1]
        above = lines[lineno - 2].strip() if lineno >= 2 else ""
        return "#" in here or above.startswith("#")

    def walk(nodes: list[ast.stmt], top: bool, typing_only: bool, shared: bool) -> Iterator[Import]:
        previous_was_import = False
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                said = reason(node.lineno) or (shared and previous_was_import)
                for target in targets(node):
                    yield Import(module, target, node.lineno, top, typing_only, said)
                shared = said
                previous_was_import = True
                continue
            previous_was_import = False
            if isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.body, top, True, False)
                continue
            inner_top = top and not isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            )
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list) and children and isinstance(children[0], ast.AST):
                    stmts = [c for c in children if isinstance(c, ast.stmt)]
                    for handler in (c for c in children if isinstance(c, ast.ExceptHandler)):
                        stmts.extend(handler.body)
                    yield from walk(stmts, inner_top, typing_only, False)

    yield from walk(tree.body, True, False, False)


def _all_imports() -> list[Import]:
    modules = _modules()
    return [imp for m, p in modules.items() for imp in _imports(m, p, modules)]


def test_every_module_sits_on_a_floor() -> None:
    for module in _modules():
        _floor(module)


def test_nothing_imports_upward() -> None:
    upward = [
        f"{i.source}:{i.line} ({FLOORS[_floor(i.source)][0]}) imports {i.target} "
        f"({FLOORS[_floor(i.target)][0] if _floor(i.target) < len(FLOORS) else 'public API'})"
        for i in _all_imports()
        if _floor(i.target) > _floor(i.source)
    ]
    assert upward == [], "\n".join(upward)


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {m: set() for m in _modules()}
    for i in _all_imports():
        if not i.typing_only:
            graph[i.source].add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == [], cycles


def test_imports_sit_at_the_top_or_say_why_not() -> None:
    hidden = [
        f"{i.source}:{i.line} imports {i.target} inside a function without a reason"
        for i in _all_imports()
        if not i.top and not i.reason
    ]
    assert hidden == [], "\n".join(hidden)


def test_the_framework_imports_no_graph() -> None:
    offenders = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{module} imports {n}" for n in names if n.split(".")[0] == "graphs"]
    assert offenders == []


def test_the_floor_rules_catch_an_upward_import(tmp_path: Path) -> None:
    """The checks can fail: a core module that imports a node is reported."""
    fake = {"agentflow.errors": tmp_path / "errors.py", "agentflow.nodes.act": tmp_path / "act.py"}
    fake["agentflow.errors"].write_text("def f():\n    from agentflow.nodes.act import x\n")
    fake["agentflow.nodes.act"].write_text("x = 1\n")
    found = list(_imports("agentflow.errors", fake["agentflow.errors"], fake))
    assert [(i.target, i.top, i.reason) for i in found] == [("agentflow.nodes.act", False, False)]
    assert _floor(found[0].target) > _floor(found[0].source)
