"""Debian's nginx in front of a real gateway, configured by deploy/nginx/joinery.conf
with only its addresses changed: RPC, a page, an SSE stream and a supabase-js
channel all through nginx; the client's address as nginx logs it and as the
gateway sees it (its access log, and request.client_addr in SQL), with a trusted
chain and with spoofed headers from untrusted peers. Also
deploy/systemd/joinery.service under `systemd-analyze verify`.

Untrusted peers are made on the loopback itself: a client socket bound to
127.0.0.2 reaches servers on 127.0.0.1, and is not in TRUSTED_PROXIES."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
from test_realtime import Subscriber, approve, on, pending_group
from test_supabase_js import JS_DIR, ensure_node
from test_supabase_js_realtime import Lines

from conftest import ROOT, free_port, start_gateway, stop_gateway
from gateway.pages.headers import CSP

if TYPE_CHECKING:
    from conftest import GatewayProcess

NGINX = "/usr/sbin/nginx"
CONF = ROOT / "deploy" / "nginx" / "joinery.conf"
UNIT = ROOT / "deploy" / "systemd" / "joinery.service"
UNTRUSTED = "127.0.0.2"  # a loopback address outside TRUSTED_PROXIES
CLIENT = "203.0.113.9"  # the client's address, as a load balancer in front reports it

# Reads the setting the gateway gives SQL; made for these tests, dropped after them.
ADDR_FUNCTION = """
create function api.test_client_addr() returns text language sql stable
as $$ select pg_catalog.current_setting('request.client_addr', true) $$;
grant execute on function api.test_client_addr() to anon, authenticated
"""


@dataclass
class Nginx:
    url: str
    process: subprocess.Popen[bytes]
    access_log: Path
    error_log: Path

    def lines(self) -> list[str]:
        return self.access_log.read_text().splitlines()


def derived_config(upstream_port: int, listen_port: int) -> str:
    """deploy/nginx/joinery.conf with the test's addresses: the gateway's port, a
    loopback listen address, and the local load balancer (127.0.0.1) trusted by
    nginx's realip lines. Each replacement must find its line (the file stays
    the one that is tested)."""
    text = CONF.read_text()
    replacements = [
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("\n    listen 80;\n", f"\n    listen 127.0.0.1:{listen_port};\n"),
        ("# set_real_ip_from 10.0.0.0/8;", "set_real_ip_from 127.0.0.1;"),
        ("# real_ip_header X-Forwarded-For;", "real_ip_header X-Forwarded-For;"),
        ("# real_ip_recursive on;", "real_ip_recursive on;"),
    ]
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} is not once in {CONF.name}"
        text = text.replace(old, new)
    return text


def start_nginx(prefix: Path, upstream_port: int) -> Nginx:
    port = free_port()
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "joinery.conf").write_text(derived_config(upstream_port, port))
    main = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    log_format joinery '$remote_addr "$request" $status rid=$http_x_request_id';
    access_log {prefix}/logs/access.log joinery;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/joinery.conf;
}}
"""
    (prefix / "nginx.conf").write_text(main)
    error_log = prefix / "logs" / "error.log"
    command = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(error_log)]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, error_log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Nginx(url, process, prefix / "logs" / "access.log", error_log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"nginx did not answer:\n{error_log.read_text()}")


@pytest.fixture(scope="module")
def behind(database_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[GatewayProcess, Nginx]]:
    """A gateway that trusts 127.0.0.1 (nginx), and nginx in front of it."""
    if not Path(NGINX).is_file():
        pytest.fail("nginx is not installed: run scripts/install-deps (make test does)")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(ADDR_FUNCTION)
    base = tmp_path_factory.mktemp("nginx")
    gateway = start_gateway(database_url, base / "gateway.log",
                            TRUSTED_PROXIES="127.0.0.1/32", JOINERY_ENV="development")
    nginx: Nginx | None = None
    try:
        nginx = start_nginx(base / "prefix", int(gateway.url.rsplit(":", 1)[1]))
        yield gateway, nginx
    finally:
        if nginx is not None:
            nginx.process.terminate()
            nginx.process.wait(10)
        stop_gateway(gateway)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("drop function api.test_client_addr()")
            conn.execute("notify joinery_schema")  # gateways forget it (/openapi.json)


def http_from(address: str, base_url: str) -> httpx.Client:
    """A client whose connections come from `address` (a loopback address)."""
    return httpx.Client(base_url=base_url, timeout=30,
                        transport=httpx.HTTPTransport(local_address=address))


def gateway_saw(gateway: GatewayProcess, request_id: str) -> dict[str, Any]:
    """The gateway's access-log line of one request (written within 50 ms)."""
    deadline = time.monotonic() + 5
    while True:
        mine = [json.loads(line) for line in gateway.log().splitlines()
                if line.startswith("{") and f'"request_id":"{request_id}"' in line]
        if mine or time.monotonic() > deadline:
            assert len(mine) == 1, mine
            return mine[0]
        time.sleep(0.05)


def nginx_saw(nginx: Nginx, request_id: str) -> str:
    """The address at the start of nginx's access-log line of one request."""
    deadline = time.monotonic() + 5
    while True:
        mine = [line for line in nginx.lines() if line.endswith(f" rid={request_id}")]
        if mine or time.monotonic() > deadline:
            assert len(mine) == 1, nginx.lines()[-5:]
            return mine[0].split(" ", 1)[0]
        time.sleep(0.05)


def addr_call(http: httpx.Client, method: str, **headers: str) -> tuple[str, str]:
    """test_client_addr through `http`: (request id, the address SQL was given)."""
    request_id = f"proxy-{uuid.uuid4().hex[:16]}"
    url = "/rest/v1/rpc/test_client_addr"
    answer = (http.post(url, json={}, headers={"X-Request-Id": request_id, **headers})
              if method == "POST" else
              http.get(url, headers={"X-Request-Id": request_id, **headers}))
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == request_id
    return request_id, answer.json()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_trusted_chain_names_the_client_everywhere(behind: tuple[GatewayProcess, Nginx],
                                                   method: str) -> None:
    """A load balancer on 127.0.0.1 (trusted by nginx) reports the client; a
    client-written entry to its left is ignored by nginx and by the gateway."""
    gateway, nginx = behind
    with http_from("127.0.0.1", nginx.url) as http:
        request_id, in_sql = addr_call(http, method,
                                       **{"X-Forwarded-For": f"6.6.6.6, {CLIENT}"})
    assert nginx_saw(nginx, request_id) == CLIENT
    assert in_sql == CLIENT
    line = gateway_saw(gateway, request_id)
    assert (line["client"], line["route"], line["status"]) == (
        CLIENT, "/rest/v1/rpc/{fn}", 200)


def test_spoofed_header_to_nginx_from_an_untrusted_peer(
        behind: tuple[GatewayProcess, Nginx]) -> None:
    gateway, nginx = behind
    with http_from(UNTRUSTED, nginx.url) as http:
        request_id, in_sql = addr_call(http, "POST", **{"X-Forwarded-For": CLIENT,
                                                        "X-Real-IP": CLIENT})
    assert nginx_saw(nginx, request_id) == UNTRUSTED
    assert in_sql == UNTRUSTED
    assert gateway_saw(gateway, request_id)["client"] == UNTRUSTED


def test_spoofed_header_straight_to_the_gateway_is_ignored(
        behind: tuple[GatewayProcess, Nginx], gateway: GatewayProcess) -> None:
    """Past nginx, from a peer outside TRUSTED_PROXIES; and to a gateway with
    TRUSTED_PROXIES empty (the suite's own, in prepared mode), from 127.0.0.1."""
    proxied, _ = behind
    spoof = {"X-Forwarded-For": CLIENT, "X-Real-IP": CLIENT}
    with http_from(UNTRUSTED, proxied.url) as http:
        request_id, in_sql = addr_call(http, "POST", **spoof)
    assert in_sql == UNTRUSTED
    assert gateway_saw(proxied, request_id)["client"] == UNTRUSTED
    for method in ("POST", "GET"):
        with http_from("127.0.0.1", gateway.url) as http:
            request_id, in_sql = addr_call(http, method, **spoof)
        assert in_sql == "127.0.0.1"
        assert gateway_saw(gateway, request_id)["client"] == "127.0.0.1"


def test_rpc_and_a_page_through_nginx(behind: tuple[GatewayProcess, Nginx], make_user) -> None:
    gateway, nginx = behind
    user = make_user("Proxied Person")
    with httpx.Client(base_url=nginx.url, timeout=30) as http:
        me = http.post("/rest/v1/rpc/me", json={}, headers=user.headers)
        assert me.status_code == 200, me.text
        assert me.json()["id"] == user.id
        refused = http.post("/rest/v1/rpc/me", json={},
                            headers={"Authorization": "Bearer not.a.jwt"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["content-security-policy"] == CSP
        assert page.text.startswith("<!doctype html>")
        script = http.get("/pages/static/common.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
    assert "Traceback" not in gateway.log()


def upstream_connections(nginx: Nginx, port: int) -> int:
    """Established connections from nginx's worker processes to the gateway's port,
    read from /proc (the workers' socket inodes, matched in /proc/net/tcp)."""
    master = nginx.process.pid
    workers = [int(pid) for task in Path(f"/proc/{master}/task").iterdir()
               for pid in (task / "children").read_text().split()]
    inodes: set[str] = set()
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


def test_nginx_keeps_connections_to_the_gateway_alive(behind: tuple[GatewayProcess, Nginx],
                                                      make_user) -> None:
    gateway, nginx = behind
    user = make_user()
    port = int(gateway.url.rsplit(":", 1)[1])
    for _ in range(10):
        with httpx.Client(base_url=nginx.url, timeout=30) as http:  # a new client each time
            assert http.post("/rest/v1/rpc/me", json={}, headers=user.headers).status_code == 200
    # One request at a time, one connection kept: without keep-alive nginx would
    # have closed each after its answer and hold none now.
    assert upstream_connections(nginx, port) == 1


def test_nginx_refuses_what_the_gateway_would(behind: tuple[GatewayProcess, Nginx]) -> None:
    _, nginx = behind
    with httpx.Client(base_url=nginx.url, timeout=30) as http:
        big = http.post("/rest/v1/rpc/me", content=b"x" * (1024 * 1024 + 1),
                        headers={"Content-Type": "application/json"})
        assert big.status_code == 413
        assert "<center>nginx</center>" in big.text  # refused by nginx, not passed on
        long_header = http.get("/healthz", headers={"X-Pad": "a" * 17000})
        assert long_header.status_code == 400
        assert "Request Header Or Cookie Too Large" in long_header.text
        fits = http.get("/healthz", headers={"X-Pad": "a" * 12000})
        assert fits.status_code == 200


def test_sse_through_nginx_is_not_buffered(behind: tuple[GatewayProcess, Nginx],
                                           make_user) -> None:
    _, nginx = behind
    # The location says so (the gateway's X-Accel-Buffering: no says it as well).
    sse = CONF.read_text().split("location = /realtime/v1/sse {", 1)[1].split("}", 1)[0]
    assert "proxy_buffering off;" in sse and "proxy_read_timeout 1h;" in sse
    with httpx.Client(base_url=nginx.url, timeout=30) as http:
        group = pending_group(http, make_user)
        member = group.friends[0]
        subscriber = Subscriber(nginx.url, [f"group:{group.id}"], member,
                                until=on("group_approved"))
        # The `ready` frame is a few bytes: buffered, it would not arrive.
        subscriber.wait_ready()
        assert subscriber.content_type.startswith("text/event-stream")
        decided = approve(http, group)
    subscriber.join()
    [frame] = subscriber.events("group_approved")
    assert frame.json()["chat_id"] == decided["chatId"]
    assert frame.json()["group_id"] == group.id


def test_supabase_js_channel_through_nginx(behind: tuple[GatewayProcess, Nginx],
                                           make_user) -> None:
    node = ensure_node()
    gateway, nginx = behind
    with httpx.Client(base_url=nginx.url, timeout=30) as http:
        group = pending_group(http, make_user)
        member = group.friends[0]
        env = {**os.environ, "GATEWAY_URL": nginx.url, "USER_TOKEN": member.token,
               "TOPIC": f"group:{group.id}"}
        child = subprocess.Popen([node, "restart.mjs"], cwd=JS_DIR, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            lines = Lines(child)
            assert lines.next(20) == "SUBSCRIBED", lines.seen
            decided = approve(http, group)
            line = lines.next(10)
            assert json.loads(line.removeprefix("BROADCAST ")) == {
                "type": "broadcast", "event": "group_approved",
                "payload": {"type": "group_approved", "topic": f"group:{group.id}",
                            "group_id": group.id, "chat_id": decided["chatId"]}}
            assert child.wait(10) == 0
        finally:
            if child.poll() is None:
                child.kill()
    # The upgrade went through nginx: 101 in its log.
    assert any(re.search(r'"GET /realtime/v1/websocket\?[^"]*" 101 ', line)
               for line in nginx.lines()), nginx.lines()[-5:]
    assert "Traceback" not in gateway.log()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The unit as shipped names /opt/joinery; verify checks that ExecStart exists.
    text = UNIT.read_text()
    assert text.count("ExecStart=/opt/joinery/.venv/bin/python -m gateway serve") == 1
    unit = tmp_path / "joinery.service"
    unit.write_text(text.replace("/opt/joinery/.venv/bin/python",
                                 str(ROOT / ".venv" / "bin" / "python")))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    for line in ("User=joinery", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "PrivateTmp=yes", "ProtectHome=yes", "LimitNOFILE=16384",
                 "EnvironmentFile=/etc/joinery/joinery.env"):
        assert f"\n{line}\n" in text, line


def test_systemd_prune_timer_verifies(tmp_path: Path) -> None:
    """deploy/systemd/joinery-prune.{service,timer}: `python -m gateway prune` daily."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    folder = ROOT / "deploy" / "systemd"
    text = (folder / "joinery-prune.service").read_text()
    assert text.count("ExecStart=/opt/joinery/.venv/bin/python -m gateway prune\n") == 1
    (tmp_path / "joinery-prune.service").write_text(text.replace(
        "/opt/joinery/.venv/bin/python", str(ROOT / ".venv" / "bin" / "python")))
    (tmp_path / "joinery-prune.timer").write_text(
        (folder / "joinery-prune.timer").read_text())
    done = subprocess.run([analyze, "verify", "joinery-prune.timer", "joinery-prune.service"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    for line in ("Type=oneshot", "User=joinery", "NoNewPrivileges=yes",
                 "EnvironmentFile=/etc/joinery/prune.env"):
        assert f"\n{line}\n" in text, line
