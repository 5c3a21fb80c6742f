"""The gateway's modules import each other without a loop, `TYPE_CHECKING` and
function-local imports counted: the graph is read from the source (ast), with
relative imports resolved, not from what Python happens to load.

Also: db.py (and the modules below it) import nothing from the HTTP surface, and
the surfaces (http/, realtime/, pages/) do not import each other: they receive the
composition root (gateway/context.py)."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"
SURFACES = ("gateway.http", "gateway.realtime", "gateway.pages")


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the gateway package."""
    found = {}
    for path in GATEWAY.rglob("*.py"):
        parts = path.relative_to(GATEWAY.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name an ImportFrom names (before its imported names)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the gateway modules it imports, anywhere in its file."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                # `from . import db` names a module; `from .pages import routes` a name in one.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for target in targets:
                while target and target not in modules:  # `import gateway.x.y` -> nearest module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop, as a path of modules, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_is_read() -> None:
    """The reader itself: known edges are there, TYPE_CHECKING ones included."""
    graph = import_graph()
    assert "gateway.errors" in graph["gateway.db"]
    assert "gateway.context" in graph["gateway.realtime.socket"]  # under TYPE_CHECKING
    assert "gateway.pages" in graph["gateway.app"]  # `from .pages import routes`
    assert "gateway.tools.migrate" in graph["gateway.__main__"]  # inside a function


def test_no_import_loop() -> None:
    assert _cycle(import_graph()) is None


def test_a_loop_would_be_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_db_imports_nothing_from_http() -> None:
    graph = import_graph()
    below = _reaches(graph, "gateway.db") | {"gateway.db"}
    assert not {m for m in below if m == "gateway.http" or m.startswith("gateway.http.")}


def test_the_surfaces_do_not_import_each_other() -> None:
    graph = import_graph()
    crossing = []
    for module, targets in graph.items():
        own = next((s for s in SURFACES if module == s or module.startswith(s + ".")), None)
        if own is None:
            continue
        for target in targets:
            other = next((s for s in SURFACES if target == s or target.startswith(s + ".")), None)
            if other is not None and other != own:
                crossing.append(f"{module} -> {target}")
    assert crossing == []
