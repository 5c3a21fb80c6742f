"""The real `@supabase/supabase-js` client (npm, run with the machine's Node.js)
against the gateway, unchanged: tests/js/rpc.test.mjs run by node's test runner
with a fresh user's JWT and an anon JWT."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from conftest import JWT_SECRET, ROOT, install_js
from gateway.jwt_auth import mint

if TYPE_CHECKING:
    from conftest import GatewayProcess

JS_DIR = ROOT / "tests" / "js"
TEST_FILE = JS_DIR / "rpc.test.mjs"
RUN_TIMEOUT = 120


def node_modules_ready() -> bool:
    return (JS_DIR / "node_modules" / "@supabase" / "supabase-js" / "package.json").is_file()


@pytest.fixture(scope="module")
def node() -> str:
    return ensure_node()


def ensure_node() -> str:
    """Node.js, with tests/js installed (npm ci) when it is not yet; skips without Node."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("Node.js is not installed (`node` is not on PATH): "
                    "the @supabase/supabase-js tests need it")
    install_js(node_modules_ready)
    return found


def tap_summary(output: str) -> dict[str, int]:
    """node's TAP reporter closes with `# tests N`, `# pass N`, `# fail N`, ..."""
    return {key: int(value) for key, value in
            re.findall(r"^# (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$",
                       output, re.M)}


def test_supabase_js_rpc(node: str, gateway: GatewayProcess, make_user) -> None:
    user = make_user()
    env = {
        **os.environ,
        "GATEWAY_URL": gateway.url,
        "USER_TOKEN": user.token,
        "USER_ID": user.id,
        "ANON_TOKEN": mint(JWT_SECRET, None, role="anon"),
        "NO_COLOR": "1",
    }
    # In tests/js with no path: node picks up *.test.mjs there and skips node_modules
    # (a directory argument is read as a glob by newer Node.js versions).
    done = subprocess.run([node, "--test", "--test-reporter=tap"], cwd=JS_DIR, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    output = done.stdout + done.stderr
    expected = len(re.findall(r"^\s*test\('", TEST_FILE.read_text(), re.M))
    assert expected == 10
    assert done.returncode == 0, output
    assert tap_summary(done.stdout) == {
        "tests": expected, "suites": 2, "pass": expected, "fail": 0,
        "cancelled": 0, "skipped": 0, "todo": 0,
    }, output
