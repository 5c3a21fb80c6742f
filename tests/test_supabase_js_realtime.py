"""The real `@supabase/supabase-js` realtime client (npm, run with the machine's
Node.js) against the gateway's /realtime/v1/websocket: tests/js/realtime.spec.mjs
(private channels, refusals, setAuth, heartbeats, both serializers, 200 sockets),
and tests/js/restart.mjs across a gateway restart."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from test_realtime import approve, pending_group
from test_supabase_js import JS_DIR, ensure_node, tap_summary

from conftest import JWT_SECRET, start_gateway, stop_gateway

if TYPE_CHECKING:
    from conftest import GatewayProcess

SPEC = JS_DIR / "realtime.spec.mjs"
RUN_TIMEOUT = 180


@pytest.fixture(scope="module")
def node() -> str:
    return ensure_node()


@pytest.fixture(scope="module")
def short_idle(database_url: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[GatewayProcess]:
    proc = start_gateway(database_url, tmp_path_factory.mktemp("idle") / "gateway.log",
                         REALTIME_IDLE_TIMEOUT="2")
    yield proc
    stop_gateway(proc)


def test_supabase_js_realtime(node: str, gateway: GatewayProcess, short_idle: GatewayProcess,
                              make_user) -> None:
    users = [make_user() for _ in range(40)]
    env = {
        **os.environ,
        "GATEWAY_URL": gateway.url,
        "SHORT_IDLE_URL": short_idle.url,
        "JWT_SECRET": JWT_SECRET,
        "USERS": json.dumps([{"id": u.id, "token": u.token} for u in users]),
        "NO_COLOR": "1",
    }
    done = subprocess.run([node, "--test", "--test-reporter=tap", SPEC.name], cwd=JS_DIR,
                          env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    output = done.stdout + done.stderr
    # Nine test( calls in the file, one of them in a loop over both serializers.
    text = SPEC.read_text()
    assert text.count("\n    test(`") + text.count("\n  test(") == 9
    expected = 10
    assert done.returncode == 0, output
    assert tap_summary(done.stdout) == {
        "tests": expected, "suites": 1, "pass": expected, "fail": 0,
        "cancelled": 0, "skipped": 0, "todo": 0,
    }, output
    assert "Traceback" not in gateway.log()
    for line in output.splitlines():
        if "figure:" in line:
            print("\n" + line.split("figure:", 1)[1].strip())


class Lines:
    """A child's standard output, line by line, read in a background thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: [self.lines.put(line.rstrip("\n"))
                                         for line in stdout], daemon=True).start()

    def next(self, timeout: float) -> str:
        line = self.lines.get(timeout=timeout)
        self.seen.append(line)
        return line


def test_supabase_js_reconnects_after_a_gateway_restart(
        node: str, database_url: str, tmp_path: Path, make_user) -> None:
    first = start_gateway(database_url, tmp_path / "first.log")
    port = int(first.url.rsplit(":", 1)[1])
    with httpx.Client(base_url=first.url, timeout=30) as http:
        group = pending_group(http, make_user)
    member = group.friends[0]
    env = {**os.environ, "GATEWAY_URL": first.url, "USER_TOKEN": member.token,
           "TOPIC": f"group:{group.id}"}
    child = subprocess.Popen([node, "restart.mjs"], cwd=JS_DIR, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    second: GatewayProcess | None = None
    try:
        lines = Lines(child)
        assert lines.next(20) == "SUBSCRIBED", lines.seen
        stop_gateway(first)
        time.sleep(0.5)
        second = start_gateway(database_url, tmp_path / "second.log", port=port)
        # supabase-js reconnects by itself (backoff 1, 2, 5, 10 s) and rejoins.
        line = lines.next(30)
        while line != "SUBSCRIBED":
            line = lines.next(30)
        with httpx.Client(base_url=second.url, timeout=30) as http:
            decided = approve(http, group)
        line = lines.next(10)
        while not line.startswith("BROADCAST "):
            line = lines.next(10)
        assert json.loads(line[len("BROADCAST "):]) == {
            "type": "broadcast", "event": "group_approved",
            "payload": {"type": "group_approved", "topic": f"group:{group.id}",
                        "group_id": group.id, "chat_id": decided["chatId"]}}
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
        stop_gateway(first)
        if second is not None:
            stop_gateway(second)
