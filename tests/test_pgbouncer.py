"""The gateway behind PgBouncer in transaction mode (Debian's pgbouncer): the core
HTTP flows, PostgREST's error mapping, and that no role, claim or setting of one
request reaches the next one on the same server connection.

Each gateway here connects as `authenticator` to a PgBouncer (tests/pgbouncer.py)
in front of the test database; rows
are checked on the database directly. Without PgBouncer installed
(scripts/install-deps installs it) these tests fail rather than skip.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest

import pgbouncer
from conftest import JWT_SECRET, ROOT, GatewayProcess, start_gateway, stop_gateway
from gateway.jwt_auth import mint
from gateway.settings import authenticator_url

if TYPE_CHECKING:
    from conftest import User

TIMEOUT = 10.0  # every HTTP request here: no answer in 10 s is a failure


@pytest.fixture(scope="module")
def bouncer(database_url: str) -> Iterator[pgbouncer.Bouncer]:
    with pgbouncer.running_pgbouncer(database_url) as running:
        yield running


@pytest.fixture(scope="module")
def bounced_gateway(database_url: str, bouncer: pgbouncer.Bouncer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # Transactions through PgBouncer; LISTEN (realtime, mail wake-ups) needs a
    # session, so it goes to PostgreSQL directly.
    proc = start_gateway(database_url, tmp_path_factory.mktemp("bounced") / "gateway.log",
                         GATEWAY_DATABASE_URL=bouncer.authenticator_url,
                         LISTEN_DATABASE_URL=authenticator_url(database_url),
                         SSE_HEARTBEAT="1")
    yield proc
    stop_gateway(proc)


@pytest.fixture
def http(bounced_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bounced_gateway.url, timeout=TIMEOUT) as client:
        yield client


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}, body
    assert body["code"] == code, body
    return body


# --- the core flows through PgBouncer -------------------------------------------


def test_groups_invite_join_rejoin_410_and_429(http: httpx.Client, make_user, admin) -> None:
    owner, joiner, late, prober = make_user(), make_user(), make_user(), make_user()
    group = ok(http.post("/rest/v1/rpc/create_group", json={"name": "Bounced"},
                         headers=owner.headers))
    invite = ok(http.post(f"/api/groups/{group['id']}/invite", json={"max_uses": 1},
                          headers=owner.headers), 201)["invite"]

    joined = ok(http.post("/api/groups/join", json={"code": invite["code"]},
                          headers=joiner.headers))
    assert joined["membership"]["user_id"] == joiner.id
    assert joined["group"] == {"id": group["id"], "name": "Bounced"}
    again = ok(http.post("/api/groups/join", json={"code": invite["code"].upper()},
                         headers=joiner.headers))
    assert again == joined

    used_up = refused(http.post("/api/groups/join", json={"code": invite["code"]},
                                headers=late.headers), 410, "PT410")
    assert used_up["details"] == "used_up"
    row = admin.execute("select use_count from app.group_invites where id = %s",
                        (invite["id"],)).fetchone()
    assert row == (1,)
    members = admin.execute("select user_id::text, role from app.group_members "
                            "where group_id = %s order by role desc", (group["id"],)).fetchall()
    assert members == [(owner.id, "owner"), (joiner.id, "member")]

    # The join limiter: ten attempts a minute, then 429 with Retry-After.
    for _ in range(10):
        refused(http.post("/api/groups/join", json={"code": str(uuid.uuid4())},
                          headers=prober.headers), 404, "PT404")
    limited = refused(http.post("/api/groups/join", json={"code": invite["code"]},
                                headers=prober.headers), 429, "PT429")
    assert limited["message"] == "Too many attempts. Try again later."
    response = http.post("/api/groups/join", json={"code": invite["code"]},
                         headers=prober.headers)
    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit()


def test_like_group_approval(http: httpx.Client, make_user, admin) -> None:
    host, creator, friend = make_user(), make_user(), make_user()
    event = ok(http.post("/rest/v1/rpc/create_event", json={"title": "Bounced gig"},
                         headers=host.headers))
    ok(http.post("/rest/v1/rpc/request_friend", json={"user_id": friend.id},
                 headers=creator.headers))
    ok(http.post("/rest/v1/rpc/accept_friend", json={"user_id": creator.id},
                 headers=friend.headers))

    group = ok(http.post(f"/events/{event['id']}/like", json={"memberIds": [friend.id]},
                         headers=creator.headers), 201)
    assert group["status"] == "pending"
    assert sorted(group["memberIds"]) == sorted([creator.id, friend.id])
    assert group["approvalsNeeded"] == 1
    refused(http.post(f"/groups/{group['id']}/approve", headers=friend.headers), 403, "42501")

    decided = ok(http.post(f"/groups/{group['id']}/approve", headers=host.headers))
    assert decided["id"] == group["id"]
    assert decided["status"] == "approved"
    assert decided["chatId"] is not None
    seen = ok(http.get(f"/groups/{group['id']}", headers=friend.headers))
    assert seen["status"] == "approved" and seen["chatId"] == decided["chatId"]
    row = admin.execute("select status from app.like_groups where id = %s",
                        (group["id"],)).fetchone()
    assert row == ("approved",)


def test_pair_invite_join_and_accept(http: httpx.Client, make_user, admin) -> None:
    inviter, invitee = make_user("Ines Bounced"), make_user()
    deadline = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    event = ok(http.post("/rest/v1/rpc/create_event", headers=inviter.headers, json={
        "title": "Bounced doubles", "registration_deadline": deadline, "capacity": 10}))
    created = ok(http.post(f"/api/events/{event['id']}/invite", json={},
                           headers=inviter.headers), 201)
    joined = ok(http.post("/api/invites/join", json={"code": created["short_code"]},
                          headers=invitee.headers))
    assert joined["event"] == {"id": event["id"], "title": "Bounced doubles"}
    assert joined["inviter"] == {"display_name": "Ines Bounced"}

    accepted = ok(http.post(f"/api/invites/{joined['token']}/accept", headers=invitee.headers))
    assert accepted["success"] is True and accepted["event_id"] == event["id"]
    assert sorted(r["user_id"] for r in accepted["registrations"]) == sorted(
        [inviter.id, invitee.id])
    assert {r["status"] for r in accepted["registrations"]} == {"confirmed"}
    rows = admin.execute("select user_id::text, status, pair_id::text from app.registrations "
                         "where event_id = %s order by user_id", (event["id"],)).fetchall()
    assert sorted(rows) == sorted([(inviter.id, "confirmed", accepted["pair_id"]),
                                   (invitee.id, "confirmed", accepted["pair_id"])])
    # Accepting again answers the same; the code is used up.
    again = ok(http.post("/api/invites/accept", json={"token": joined["token"]},
                         headers=invitee.headers))
    assert again == accepted
    refused(http.post("/api/invites/join", json={"code": created["short_code"]},
                      headers=invitee.headers), 404, "PT404")


def test_errors_map_as_postgrest(http: httpx.Client, make_user) -> None:
    user = make_user()
    refused(http.post("/rest/v1/rpc/no_such_function", json={}, headers=user.headers),
            404, "PGRST202")
    refused(http.post("/rest/v1/rpc/create_group", json={"name": "x", "colour": "red"},
                      headers=user.headers), 404, "PGRST202")
    anon = refused(http.post("/rest/v1/rpc/my_groups"), 401, "42501")
    assert anon["message"]
    bad = http.post("/rest/v1/rpc/my_groups", headers={"Authorization": "Bearer a.b.c"})
    refused(bad, 401, "PGRST301")
    assert bad.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    refused(http.get("/rest/v1/rpc/create_group", params={"name": "x"}, headers=user.headers),
            405, "PGRST101")
    refused(http.post("/rest/v1/rpc/update_profile", json={"display_name": " "},
                      headers=user.headers), 400, "22023")
    # A void function: 204, no body.
    group = ok(http.post("/rest/v1/rpc/create_group", json={"name": "Void"},
                         headers=user.headers))
    invite = ok(http.post(f"/api/groups/{group['id']}/invite", json={},
                          headers=user.headers), 201)["invite"]
    revoked = http.post("/rest/v1/rpc/revoke_group_invite", json={"code": invite["code"]},
                        headers=user.headers)
    assert revoked.status_code == 204 and revoked.content == b""
    assert http.get("/healthz").json() == {"status": "ok", "database": True}


# --- nothing leaks between requests on one server connection ---------------------


@pytest.fixture(scope="module")
def single_bouncer(database_url: str) -> Iterator[pgbouncer.Bouncer]:
    """One server connection per user: every request of the gateway runs on it. A
    client waits at most 5 s for it (query_wait_timeout)."""
    with pgbouncer.running_pgbouncer(database_url, pool_size=1,
                                     settings={"query_wait_timeout": "5"}) as running:
        yield running


@pytest.fixture(scope="module")
def single_gateway(database_url: str, single_bouncer: pgbouncer.Bouncer,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    proc = start_gateway(database_url, tmp_path_factory.mktemp("single") / "gateway.log",
                         GATEWAY_DATABASE_URL=single_bouncer.authenticator_url,
                         POOL_MIN="1", POOL_MAX="1")
    yield proc
    stop_gateway(proc)


LEFTOVERS = """
select current_user, session_user, current_setting('role'),
       coalesce(current_setting('request.jwt.claims', true), ''),
       coalesce(current_setting('request.method', true), ''),
       coalesce(current_setting('request.path', true), ''),
       coalesce(current_setting('request.headers', true), ''),
       coalesce(current_setting('request.client_addr', true), ''),
       coalesce(current_setting('response.status', true), ''),
       coalesce(current_setting('response.headers', true), ''),
       current_setting('transaction_read_only')
"""


def test_nothing_leaks_between_requests(single_gateway: GatewayProcess,
                                        single_bouncer: pgbouncer.Bouncer, make_user,
                                        database_url: str) -> None:
    a, b, c = make_user(), make_user(), make_user()
    service = {"Authorization": f"Bearer {mint(JWT_SECRET, c.id, role='service_role')}"}
    with httpx.Client(base_url=single_gateway.url, timeout=TIMEOUT) as http:
        group_a = ok(http.post("/rest/v1/rpc/create_group", json={"name": "A's"},
                               headers=a.headers))
        group_c = ok(http.post("/rest/v1/rpc/create_group", json={"name": "C's"},
                               headers=c.headers))
        for _ in range(3):
            assert ok(http.post("/rest/v1/rpc/me", headers=a.headers))["id"] == a.id
            refused(http.post("/rest/v1/rpc/me"), 401, "42501")
            assert ok(http.get("/rest/v1/rpc/me", headers=b.headers))["id"] == b.id
            # service_role acts for its subject, and its role must not stay on.
            assert ok(http.post("/rest/v1/rpc/me", headers=service))["id"] == c.id
            refused(http.post("/rest/v1/rpc/my_groups"), 401, "42501")
            # A refusal sets response.status: the next answer must not inherit it.
            refused(http.post("/api/groups/join", json={"code": str(uuid.uuid4())},
                              headers=b.headers), 404, "PT404")
            assert ok(http.post("/rest/v1/rpc/my_groups", headers=b.headers)) == []
            # Functions reading the claims: each caller sees only their own topic.
            assert ok(http.post("/rest/v1/rpc/can_subscribe", json={"topic": f"user:{a.id}"},
                                headers=a.headers)) is True
            assert ok(http.post("/rest/v1/rpc/can_subscribe", json={"topic": f"user:{a.id}"},
                                headers=b.headers)) is False
            refused(http.post("/rest/v1/rpc/can_subscribe", json={"topic": f"user:{a.id}"}),
                    401, "42501")
            assert [g["id"] for g in ok(http.get("/rest/v1/rpc/my_groups",
                                                 headers=a.headers))] == [group_a["id"]]
            assert [g["id"] for g in ok(http.get("/rest/v1/rpc/my_groups",
                                                 headers=service))] == [group_c["id"]]
            # After a read-only GET, a write works.
            ok(http.post("/rest/v1/rpc/update_profile", json={"display_name": "B"},
                         headers=b.headers))
        # A 429 sets response.headers (Retry-After) too; b has made 3 attempts.
        for _ in range(7):
            refused(http.post("/api/groups/join", json={"code": str(uuid.uuid4())},
                              headers=b.headers), 404, "PT404")
        limited = http.post("/api/groups/join", json={"code": str(uuid.uuid4())},
                            headers=b.headers)
        refused(limited, 429, "PT429")
        assert "Retry-After" in limited.headers
        after = http.post("/rest/v1/rpc/me", headers=a.headers)
        assert after.status_code == 200 and after.json()["id"] == a.id, after.text
        assert "Retry-After" not in after.headers

    # SHOW SERVERS: type, user, database, state, ...: every request above ran on
    # this one server connection.
    servers = [r for r in single_bouncer.admin("show servers")
               if r[1] == "authenticator" and r[2] == single_bouncer.dbname]
    assert len(servers) == 1, servers

    # On that server connection, in a fresh transaction: nothing left over.
    try:
        with psycopg.connect(single_bouncer.authenticator_url, autocommit=True,
                             prepare_threshold=None) as conn:
            row = conn.execute(LEFTOVERS).fetchone()
    except psycopg.OperationalError as exc:  # query_wait_timeout: who holds the server?
        with psycopg.connect(database_url, autocommit=True) as direct:
            sessions = direct.execute(
                "select application_name, state, xact_start is not null, left(query, 120) "
                "from pg_stat_activity where usename = 'authenticator'").fetchall()
        pytest.fail(f"no server connection for a new client within 5 s ({exc}); PgBouncer's "
                    f"clients: {single_bouncer.admin('show clients')}; servers: "
                    f"{single_bouncer.admin('show servers')}; sessions: {sessions}; "
                    f"log: {single_bouncer.log()[-2000:]}")
    assert row == ("authenticator", "authenticator", "none", "", "", "", "", "", "", "", "off"), row
    # As the superuser through the bouncer too (its own pool and server connection).
    with psycopg.connect(single_bouncer.superuser_url, autocommit=True,
                         prepare_threshold=None) as conn:
        row = conn.execute(LEFTOVERS).fetchone()
    assert row is not None
    assert row[:2] == (single_bouncer.superuser, single_bouncer.superuser)
    assert row[2:] == ("none", "", "", "", "", "", "", "", "off"), row
    # No session-level role setting or advisory lock is held by any gateway session.
    with psycopg.connect(database_url, autocommit=True) as conn:
        locks = conn.execute(
            "select count(*) from pg_locks l join pg_stat_activity a using (pid) "
            "where a.usename = 'authenticator' and l.locktype = 'advisory'").fetchone()
    assert locks == (0,)


# --- known limits behind PgBouncer --------------------------------------------------


def lock_invite(database_url: str, code: str, hold: float, locked: threading.Event) -> None:
    """Hold the invite row of `code` for `hold` seconds, as a long transaction would."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "select 1 from app.group_invites where code_hash = private.hash_secret(lower(%s)) "
            "for update", (code,))
        locked.set()
        time.sleep(hold)
        conn.rollback()


def blocked_join(url: str, user: User, code: str, database_url: str) -> tuple[float, int]:
    """A join waiting on a row lock held 2.5 s: (seconds until answered, status)."""
    locked = threading.Event()
    holder = threading.Thread(target=lock_invite, args=(database_url, code, 2.5, locked),
                              daemon=True)
    holder.start()
    assert locked.wait(5)
    started = time.monotonic()
    response = httpx.post(f"{url}/api/groups/join", json={"code": code}, headers=user.headers,
                          timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    holder.join(10)
    return elapsed, response.status_code


def test_statement_timeout_holds_behind_pgbouncer(database_url: str, make_user,
                                                  tmp_path: Path) -> None:
    """STATEMENT_TIMEOUT_MS must bound a request whichever server connection PgBouncer
    gives it. PgBouncer replaces server connections (server_lifetime,
    server_idle_timeout, RECONNECT); here RECONNECT does it at once."""
    owner = make_user()
    with pgbouncer.running_pgbouncer(database_url, pool_size=1) as bouncer:
        gateway = start_gateway(database_url, tmp_path / "gateway.log",
                                GATEWAY_DATABASE_URL=bouncer.authenticator_url,
                                POOL_MIN="1", POOL_MAX="1",
                                STATEMENT_TIMEOUT_MS="500")
        try:
            with httpx.Client(base_url=gateway.url, timeout=TIMEOUT) as http:
                group = ok(http.post("/rest/v1/rpc/create_group", json={"name": "Slow"},
                                     headers=owner.headers))
                codes = [ok(http.post(f"/api/groups/{group['id']}/invite", json={},
                                      headers=owner.headers), 201)["invite"]["code"]
                         for _ in range(2)]
            first, first_status = blocked_join(gateway.url, make_user(), codes[0], database_url)
            bouncer.admin(f"reconnect {bouncer.dbname}")
            with psycopg.connect(bouncer.authenticator_url, autocommit=True,
                                 prepare_threshold=None) as conn:
                fresh = conn.execute("show statement_timeout").fetchone()
            second, second_status = blocked_join(gateway.url, make_user(), codes[1],
                                                 database_url)
        finally:
            stop_gateway(gateway)
    print(f"\nblocked join behind PgBouncer, STATEMENT_TIMEOUT_MS=500: {first:.2f} s "
          f"({first_status}) on the first server connection; {second:.2f} s ({second_status}) "
          f"after PgBouncer replaced it (its statement_timeout: {fresh[0] if fresh else None})")
    assert first < 2.0, f"the first blocked join took {first:.2f} s"
    assert first_status != 200
    assert second < 2.0, (
        f"after PgBouncer replaced the server connection, a join blocked on a lock took "
        f"{second:.2f} s and answered {second_status}: statement_timeout is set once per "
        f"client connection, so it is missing on the new server connection")
    assert second_status != 200


def test_realtime_through_pgbouncer(bounced_gateway: GatewayProcess, bouncer: pgbouncer.Bouncer,
                                    http: httpx.Client, make_user) -> None:
    """An SSE subscriber gets group_approved through a gateway behind PgBouncer."""
    host, creator = make_user(), make_user()
    event = ok(http.post("/rest/v1/rpc/create_event", json={"title": "Live"},
                         headers=host.headers))
    group = ok(http.post(f"/events/{event['id']}/like", json={}, headers=creator.headers), 201)

    lines: queue.Queue[str] = queue.Queue()
    done = threading.Event()

    def listen() -> None:
        """Reads the stream until `done` (heartbeats come every second)."""
        try:
            with httpx.stream("GET", f"{bounced_gateway.url}/realtime/v1/sse",
                              params={"topic": f"group:{group['id']}"}, headers=creator.headers,
                              timeout=httpx.Timeout(TIMEOUT)) as response:
                lines.put(f"status {response.status_code}")
                for line in response.iter_lines():
                    lines.put(line)
                    if done.is_set():
                        break
        except httpx.HTTPError as exc:
            lines.put(f"error {type(exc).__name__}")

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        await_approved_event(lines, bouncer, http, group, host)
    finally:
        done.set()
        listener.join(TIMEOUT)


def await_approved_event(lines: queue.Queue[str], bouncer: pgbouncer.Bouncer,
                         http: httpx.Client, group: dict[str, Any], host: User) -> None:
    assert lines.get(timeout=TIMEOUT) == "status 200"
    assert lines.get(timeout=TIMEOUT) == "event: ready"
    decided = ok(http.post(f"/groups/{group['id']}/approve", headers=host.headers))
    assert decided["status"] == "approved"
    deadline = time.monotonic() + 3
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line and not line.startswith(":"):  # not heartbeats
            seen.append(line)
        if line == "event: group_approved":
            return
    with psycopg.connect(bouncer.authenticator_url, autocommit=True,
                         prepare_threshold=None) as conn:
        channels = [r[0] for r in conn.execute("select pg_listening_channels()").fetchall()]
    pytest.fail(f"no group_approved event within 3 s behind PgBouncer (got {seen}): the "
                f"gateway's listener runs LISTEN through PgBouncer, on a pooled server "
                f"connection that any client may get next (the one given to this test "
                f"listens to {channels}); notifications arrive on it while it is linked to "
                f"no client, or to another one")


def test_many_clients_share_three_server_connections(database_url: str, make_user,
                                                      tmp_path: Path) -> None:
    """The gateway prepares nothing and keeps no session state, so PgBouncer may
    hand each transaction any server connection."""
    users = [make_user() for _ in range(6)]
    with pgbouncer.running_pgbouncer(database_url, pool_size=3) as bouncer:
        gateway = start_gateway(database_url, tmp_path / "gateway.log",
                                GATEWAY_DATABASE_URL=bouncer.authenticator_url,
                                POOL_MIN="3", POOL_MAX="3")
        statuses: list[int] = []
        bodies: list[str] = []
        try:
            def hammer(user: User) -> None:
                with httpx.Client(base_url=gateway.url, timeout=TIMEOUT) as http:
                    for _ in range(8):
                        response = http.get("/rest/v1/rpc/my_groups", headers=user.headers)
                        statuses.append(response.status_code)
                        if response.status_code != 200:
                            bodies.append(response.text)

            threads = [threading.Thread(target=hammer, args=(u,), daemon=True) for u in users]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        finally:
            stop_gateway(gateway)
    assert len(statuses) == 48
    assert statuses.count(200) == 48, f"{len(bodies)} failures, e.g. {bodies[:3]}"


# The HTTP suite, run again with its gateway behind PgBouncer. Modules that start
# their own gateways (faults, this one) or need none are left out, and so are the
# browser tests of the pages (their calls are the HTTP suite's own).
NOT_THROUGH_BOUNCER = {"test_pgbouncer.py", "test_faults.py", "test_outage.py",
                       "test_migrations.py", "test_lint.py", "test_jwt_unit.py",
                       "test_supabase_compat.py", "test_pages.py", "test_pages_quality.py",
                       "test_pages_session.py"}


def test_whole_http_suite_passes_through_pgbouncer(database_url: str,
                                                   bounced_gateway: GatewayProcess) -> None:
    modules = sorted(p.name for p in (ROOT / "tests").glob("test_*.py")
                     if p.name not in NOT_THROUGH_BOUNCER)
    env = {**os.environ, "TEST_GATEWAY_URL": bounced_gateway.url,
           "TEST_GATEWAY_LOG": str(bounced_gateway.log_path),
           "TEST_GATEWAY_PID": str(bounced_gateway.process.pid), "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         *[f"tests/{m}" for m in modules]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = done.stdout[-4000:]
    assert done.returncode == 0, tail
    assert re.search(r"^\d+ passed", tail.splitlines()[-1]), tail
