"""The documentation holds together: every environment variable the gateway reads
is in docs/configuration.md, every relative link of README.md, CONTRIBUTING.md
and docs/*.md leads to a file that exists, and the README stays the door (at
most 250 lines). No database needed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "gateway"
NAME = re.compile(r"[A-Z][A-Z0-9_]*[A-Z0-9]")
# Calls that read one variable: os.environ.get(name), os.getenv(name), environ[name].
_DIRECT = {"get", "getenv"}


def _reads_environ(node: ast.AST) -> bool:
    """Whether `node` touches os.environ (or settings' _ENVIRON, which holds it)."""
    return any(isinstance(n, ast.Name | ast.Attribute)
               and "environ" in (getattr(n, "id", None) or getattr(n, "attr", "")).lower()
               for n in ast.walk(node))


def _readers(trees: list[ast.Module]) -> set[str]:
    """Names of the gateway's functions that read a variable named by their first
    argument: those whose body touches `environ`, and those calling one of them
    with their own first argument, to a fixed point (settings._env, _int, _flag,
    webhooks.config.duration, tools.migrate._setting, ...)."""
    functions = [f for tree in trees for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)]
    readers = {f.name for f in functions if f.args.args and _reads_environ(f)}
    while True:
        more = set()
        for f in functions:
            if f.name in readers or not f.args.args:
                continue
            first = f.args.args[0].arg
            for call in ast.walk(f):
                if isinstance(call, ast.Call) and _callee(call) in readers and call.args \
                        and isinstance(call.args[0], ast.Name) and call.args[0].id == first:
                    more.add(f.name)
        if not more:
            return readers
        readers |= more


def _callee(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def read_variables() -> set[str]:
    """Every environment variable named by a constant in the gateway's source."""
    trees = [ast.parse(p.read_text(), str(p)) for p in GATEWAY.rglob("*.py")]
    readers = _readers(trees) | _DIRECT
    found: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            key: ast.AST | None = None
            if isinstance(node, ast.Call) and node.args and _callee(node) in readers:
                if _callee(node) != "get" or _reads_environ(node.func):
                    key = node.args[0]
            elif isinstance(node, ast.Subscript) and _reads_environ(node.value):
                key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str) \
                    and NAME.fullmatch(key.value):
                found.add(key.value)
    return found


def test_the_reader_finds_the_settings() -> None:
    found = read_variables()
    # One of each way of reading: settings._int, settings._flag, the webhook
    # duration, migrate's _setting, os.environ.get, os.environ[...].
    assert {"POOL_MAX", "DB_PREPARED_STATEMENTS", "WEBHOOK_DISABLE_AFTER",
            "MIGRATE_LOCK_TIMEOUT", "CITUS_SHARD_COUNT", "PROMETHEUS_MULTIPROC_DIR"} <= found


def test_every_setting_is_in_configuration_md() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", text))
    assert sorted(read_variables() - documented) == []


def _documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")


def test_every_relative_link_resolves() -> None:
    broken = []
    for doc in _documents():
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # code is not links
        for match in LINK.finditer(text):
            target = match.group(1) or match.group(2)
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # another site, mail, or an anchor of the same page
            path = target.split("#", 1)[0]
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    doc = tmp_path / "a.md"
    doc.write_text("[x](missing.md) [y](https://example.org) [z](#here)")
    found = [m.group(1) for m in LINK.finditer(doc.read_text())]
    assert found == ["missing.md", "https://example.org", "#here"]
    assert not (doc.parent / "missing.md").exists()


def test_the_readme_is_short_and_links_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "make run" in readme and "make test" in readme
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in readme, doc.name
