"""Operations: JSON access log with request ids, Prometheus metrics, and a
graceful shutdown that finishes the requests in flight."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from conftest import GatewayProcess, User, start_gateway
from gateway.jwt_auth import mint


def _group_with_code(client: httpx.Client, owner: User) -> tuple[str, str]:
    group = client.post("/rest/v1/rpc/create_group", json={"name": "Ops"}, headers=owner.headers)
    assert group.status_code == 200
    invite = client.post(f"/api/groups/{group.json()['id']}/invite", json={},
                         headers=owner.headers)
    assert invite.status_code == 201
    return group.json()["id"], invite.json()["invite"]["code"]


def test_access_log_names_route_and_function_never_the_code(
        gateway: GatewayProcess, client: httpx.Client, make_user) -> None:
    owner, joiner = make_user(), make_user()
    _, code = _group_with_code(client, owner)
    answer = client.post("/api/groups/join", json={"code": code},
                         headers={**joiner.headers, "X-Request-Id": "req-ops-1"})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "req-ops-1"
    generated = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    time.sleep(0.2)  # the log line is written as the response completes
    lines = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "req-ops-1"]
    assert len(mine) == 1
    assert mine[0]["method"] == "POST"
    assert mine[0]["route"] == "/api/groups/join"
    assert mine[0]["function"] == "join_group"
    assert mine[0]["status"] == 200
    assert isinstance(mine[0]["ms"], float | int)
    assert code not in gateway.log()
    assert joiner.token not in gateway.log()


def test_metrics_count_requests_and_show_pool_and_mail_queue(
        gateway: GatewayProcess, client: httpx.Client, make_user) -> None:
    user = make_user()
    before = client.get("/metrics").text
    pattern = re.compile(
        r'^joinery_http_requests_total\{method="GET",route="/rest/v1/rpc/\{fn\}",'
        r'status="200"\} (\d+)\.0$', re.M)  # prometheus-client writes floats
    count_before = int(m[1]) if (m := pattern.search(before)) else 0
    for _ in range(3):
        assert client.get("/rest/v1/rpc/my_groups", headers=user.headers).status_code == 200
    page = client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    match = pattern.search(page.text)
    assert match is not None and int(match[1]) >= count_before + 3
    # Labels in either order (the multiprocess mode of `serve` sorts them).
    assert re.search(r'^joinery_http_request_duration_seconds_bucket\{'
                     r'(route="/rest/v1/rpc/\{fn\}",le="\+Inf"|le="\+Inf",route="/rest/v1/rpc/\{fn\}")'
                     r'\} \d+\.0$', page.text, re.M)
    for gauge in ("pool_size", "pool_available", "pool_max", "mail_queue_depth",
                  "realtime_topics"):
        assert re.search(rf"^joinery_{gauge} \d+\.0$", page.text, re.M), gauge


def test_shutdown_finishes_requests_in_flight(database_url: str, tmp_path: Path,
                                              make_user, admin: psycopg.Connection) -> None:
    proc = start_gateway(database_url, tmp_path / "gateway.log")
    owner, joiner = make_user(), make_user()
    with httpx.Client(base_url=proc.url, timeout=30) as http:
        group_id, code = _group_with_code(http, owner)
    results: list[httpx.Response] = []
    with psycopg.connect(database_url) as blocker:
        # Hold the invite's row lock: the join below waits on it inside the database.
        blocker.execute("select 1 from app.group_invites where group_id = %s for update",
                        (group_id,))
        thread = threading.Thread(target=lambda: results.append(httpx.post(
            f"{proc.url}/api/groups/join", json={"code": code}, headers=joiner.headers,
            timeout=30)))
        thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not admin.execute(
                "select 1 from pg_stat_activity where application_name = 'joinery-gateway' "
                "and wait_event_type = 'Lock'").fetchone():
            time.sleep(0.05)
        proc.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.process.poll() is None  # still finishing the request in flight
        blocker.rollback()
    thread.join(15)
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert proc.process.wait(timeout=15) in (0, -signal.SIGTERM)
    assert "Traceback" not in proc.log()
    assert len(results) == 1 and results[0].status_code == 200
    assert results[0].json()["membership"]["user_id"] == joiner.id
    member = admin.execute("select role from app.group_members where group_id = %s "
                           "and user_id = %s", (group_id, joiner.id)).fetchone()
    assert member == ("member",)


def test_request_with_token_for_unknown_role_is_not_logged_with_token(
        gateway: GatewayProcess, client: httpx.Client) -> None:
    token = mint("joinery-test-secret-0123456789-abcdefghijklmnop", None, "postgres")
    answer = client.post("/rest/v1/rpc/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    time.sleep(0.2)
    assert token not in gateway.log()


def test_workers_share_the_port_and_stop_together(database_url: str, tmp_path: Path,
                                                   make_user) -> None:
    """WORKERS=2: two processes each listening on the port (SO_REUSEPORT); both
    serve, and SIGTERM to the parent stops both cleanly."""
    proc = start_gateway(database_url, tmp_path / "gateway.log", WORKERS="2")
    user = make_user()
    try:
        statuses = []
        for _ in range(20):  # new connections: the kernel spreads them over the workers
            with httpx.Client(base_url=proc.url, timeout=10) as http:
                statuses.append(http.get("/rest/v1/rpc/my_groups", headers=user.headers)
                                .status_code)
        assert statuses == [200] * 20
        children = Path(f"/proc/{proc.process.pid}/task/{proc.process.pid}/children")
        workers = children.read_text().split()
        assert len(workers) >= 2
    finally:
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(timeout=20) == 0
    deadline = time.monotonic() + 5
    left = workers
    while left and time.monotonic() < deadline:
        left = [pid for pid in workers if _running(pid)]
        time.sleep(0.1)
    assert left == []
    assert "Traceback" not in proc.log()


def test_serve_runs_one_worker_per_core_by_default(database_url: str, tmp_path: Path,
                                                   make_user) -> None:
    """Without WORKERS, `serve` starts one worker process per core it may use."""
    proc = start_gateway(database_url, tmp_path / "gateway.log", WORKERS="")
    cores = len(os.sched_getaffinity(0))
    try:
        answer = httpx.get(f"{proc.url}/rest/v1/rpc/my_groups", headers=make_user().headers)
        assert answer.status_code == 200
        children = Path(f"/proc/{proc.process.pid}/task/{proc.process.pid}/children")
        workers = [pid for pid in children.read_text().split()
                   if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == (cores if cores > 1 else 0)
    finally:
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(timeout=20) == 0


def _running(pid: str) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_browsers_on_other_origins_may_call(client: httpx.Client, make_user) -> None:
    """CORS as PostgREST answers it: a preflight for the headers supabase-js sends,
    and the allowed origin on the answer itself."""
    preflight = client.options("/rest/v1/rpc/my_groups", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,apikey,content-type,x-client-info"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "apikey", "content-type", "x-client-info"):
        assert header in allowed
    answer = client.post("/rest/v1/rpc/my_groups", headers={
        **make_user().headers, "Origin": "https://app.example"})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "retry-after" in answer.headers["access-control-expose-headers"].lower()


@pytest.fixture
def request_context_function(admin) -> Iterator[str]:
    """An api function, for one test, that shows what the gateway set for it."""
    admin.execute("""
        create function api.test_request_context() returns jsonb
        language sql stable security definer set search_path = '' as $$
            select pg_catalog.jsonb_build_object(
                'role', current_user,
                'claims', pg_catalog.current_setting('request.jwt.claims', true)::jsonb,
                'method', pg_catalog.current_setting('request.method', true),
                'path', pg_catalog.current_setting('request.path', true),
                'headers', pg_catalog.current_setting('request.headers', true)::jsonb,
                'statement_timeout', pg_catalog.current_setting('statement_timeout'),
                'timezone', pg_catalog.current_setting('timezone'))
        $$;
        revoke execute on function api.test_request_context() from public;
        grant execute on function api.test_request_context() to authenticated;
        notify joinery_schema""")
    yield "test_request_context"
    admin.execute("drop function api.test_request_context()")


def test_request_context_reaches_sql_without_credentials(
        client: httpx.Client, make_user, request_context_function: str) -> None:
    user = make_user()
    headers = {**user.headers, "apikey": user.token, "Cookie": "session=secret",
               "X-Custom": "left out", "Prefer": "return=minimal", "User-Agent": "u" * 2000,
               "X-Client-Info": "supabase-js/2"}
    deadline = time.monotonic() + 5
    while (answer := client.post(f"/rest/v1/rpc/{request_context_function}",
                                 headers=headers)).status_code == 404 \
            and time.monotonic() < deadline:
        time.sleep(0.05)  # the catalogue reloads on the schema announcement
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    # The function runs as its owner (definer); the caller's role is in the claims.
    assert seen["claims"]["sub"] == user.id and seen["claims"]["role"] == "authenticated"
    assert seen["method"] == "POST"
    assert seen["path"] == f"/rest/v1/rpc/{request_context_function}"
    # Only the allow-listed headers, each value cut to 512 characters.
    assert set(seen["headers"]) == {"host", "accept", "prefer", "user-agent", "x-client-info"}
    assert seen["headers"]["prefer"] == "return=minimal"
    assert seen["headers"]["x-client-info"] == "supabase-js/2"
    assert seen["headers"]["user-agent"] == "u" * 512
    assert seen["statement_timeout"] == "8s"
    assert seen["timezone"] == "UTC"


def test_audit_prune_deletes_sent_mail_and_read_notifications_past_retention(
        database_url: str, admin: psycopg.Connection, make_user) -> None:
    """`audit-prune` with the audit's age: outbox messages sent and notifications
    read longer ago are deleted; unsent messages and unread notifications stay."""
    from gateway.tools.audit import prune

    user = make_user()
    tag = f"retention-{user.id}"
    outbox = admin.execute(
        "insert into app.mail_outbox (to_email, template, data, send_after, sent_at, "
        "created_at) values "
        "(%s, 'pair_invite', '{}', now() - interval '200 days', now() - interval '200 days', "
        "now() - interval '200 days'), "
        "(%s, 'pair_invite', '{}', now() + interval '200 days', null, "
        "now() - interval '200 days'), "
        "(%s, 'pair_invite', '{}', now() - interval '2 days', now() - interval '2 days', "
        "now() - interval '2 days') returning id",
        (f"old-{tag}@example.com", f"waiting-{tag}@example.com",
         f"recent-{tag}@example.com")).fetchall()
    notes = admin.execute(
        "insert into app.notifications (user_id, type, read_at, created_at) values "
        "(%s, 'old_read', now() - interval '200 days', now() - interval '300 days'), "
        "(%s, 'old_unread', null, now() - interval '300 days'), "
        "(%s, 'recent_read', now() - interval '2 days', now() - interval '300 days') "
        "returning id", (user.id, user.id, user.id)).fetchall()

    lines = prune(database_url, 100)
    assert any(re.fullmatch(r"deleted \d+ sent messages of app\.mail_outbox", line)
               for line in lines), lines
    assert any(re.fullmatch(r"deleted \d+ read rows of app\.notifications", line)
               for line in lines), lines
    kept_mail = admin.execute("select id from app.mail_outbox where id = any(%s)",
                              ([i for (i,) in outbox],)).fetchall()
    assert {i for (i,) in kept_mail} == {outbox[1][0], outbox[2][0]}
    kept_notes = admin.execute("select type from app.notifications where id = any(%s) "
                               "order by type", ([i for (i,) in notes],)).fetchall()
    assert kept_notes == [("old_unread",), ("recent_read",)]


def test_prune_deletes_tokens_of_invites_closed_past_retention_and_old_stop_tokens(
        database_url: str, admin: psycopg.Connection, make_user) -> None:
    """`prune` at 100 days: the tokens (and their routes) of invites accepted,
    declined or revoked, or expired, more than 100 days ago go; those of an open
    invite (even if issued long ago) and of invites closed recently stay. Stop
    tokens made more than 100 days ago go, the recent one stays."""
    from gateway.tools.audit import prune

    owner = make_user()
    (event,) = admin.execute(
        "insert into app.events (title, creator_id) values ('Retention', %s) returning id",
        (owner.id,)).fetchone() or (None,)
    # (label, status, expires_at, closing column, closed, tokens), ages in days
    cases = [("open", "sent", -1, None, None, 2),
             ("accepted_old", "accepted", 150, "accepted_at", 200, 2),
             ("revoked_old", "revoked", 150, "revoked_at", 200, 1),
             ("declined_recent", "declined", 150, "declined_at", 5, 1),
             ("expired_old", "sent", 200, None, None, 1),
             ("expired_recent", "sent", 5, None, None, 1)]
    hashes: dict[str, list[bytes]] = {}
    for label, status, expires, column, closed, tokens in cases:
        inviter = make_user()
        (invite,) = admin.execute(
            "insert into app.pair_invites (event_id, inviter_id, short_code, status, expires_at, "
            "accepted_at, declined_at, revoked_at, created_at) "
            "select %(event)s, %(inviter)s, (select string_agg(substr("
            "  '23456789ABCDEFGHJKMNPQRSTUVWXYZ', 1 + floor(random() * 31)::int, 1), '') "
            "  from generate_series(1, 8)), "
            "%(status)s, now() - make_interval(days => %(expires)s), "
            "case when %(column)s = 'accepted_at' then c.at end, "
            "case when %(column)s = 'declined_at' then c.at end, "
            "case when %(column)s = 'revoked_at' then c.at end, now() - interval '300 days' "
            "from (select now() - make_interval(days => %(closed)s) as at) c returning id",
            {"event": event, "inviter": inviter.id, "status": status, "expires": expires,
             "column": column, "closed": closed}).fetchone() or (None,)
        hashes[label] = []
        for _ in range(tokens):
            (token_hash,) = admin.execute(
                "insert into app.pair_invite_tokens (token_hash, invite_id, issued_to, event_id, "
                "created_at) values (sha256(gen_random_uuid()::text::bytea), %s, %s, %s, "
                "now() - interval '250 days') returning token_hash",
                (invite, owner.id, event)).fetchone() or (None,)
            admin.execute("insert into app.pair_token_routes (token_hash, event_id, created_at) "
                          "values (%s, %s, now() - interval '250 days')", (token_hash, event))
            hashes[label].append(token_hash)
    tag = f"stops-{owner.id}"
    admin.execute(
        "insert into app.mail_stop_tokens (token_hash, email, created_at) values "
        "(sha256(gen_random_uuid()::text::bytea), %s, now() - interval '200 days'), "
        "(sha256(gen_random_uuid()::text::bytea), %s, now() - interval '101 days'), "
        "(sha256(gen_random_uuid()::text::bytea), %s, now() - interval '99 days')",
        (f"a-{tag}@example.com", f"b-{tag}@example.com", f"c-{tag}@example.com"))

    def counts() -> tuple[int, int, int]:
        row = admin.execute(
            "select (select count(*) from app.pair_invite_tokens where event_id = %(e)s), "
            "(select count(*) from app.pair_token_routes where event_id = %(e)s), "
            "(select count(*) from app.mail_stop_tokens where email like %(t)s)",
            {"e": event, "t": f"%-{tag}@example.com"}).fetchone()
        assert row is not None
        return row[0], row[1], row[2]

    assert counts() == (8, 8, 3)
    lines = prune(database_url, 100)
    assert any(re.fullmatch(r"deleted \d+ tokens of closed invites of app\.pair_invite_tokens "
                            r"\(\d+ routes\)", line) for line in lines), lines
    assert any(re.fullmatch(r"deleted \d+ stop tokens of app\.mail_stop_tokens", line)
               for line in lines), lines
    assert counts() == (4, 4, 1)
    kept = admin.execute("select token_hash from app.pair_invite_tokens where event_id = %s",
                         (event,)).fetchall()
    assert {h for (h,) in kept} == {
        *hashes["open"], *hashes["declined_recent"], *hashes["expired_recent"]}
    assert admin.execute("select email from app.mail_stop_tokens where email like %s",
                         (f"%-{tag}@example.com",)).fetchall() == [(f"c-{tag}@example.com",)]
    prune(database_url, 100)  # nothing more of these goes at the same age
    assert counts() == (4, 4, 1)


def test_audit_prune_deletes_closed_rate_limit_windows_by_their_bucket(
        database_url: str, admin: psycopg.Connection) -> None:
    """`audit-prune` deletes a rate-limit counter once its own bucket's window has
    closed: a minute for join_code, not the day of the longest bucket."""
    from gateway.tools.audit import prune

    closed, open_, hourly = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    admin.execute(
        "insert into app.rate_limit_counters (user_id, bucket, window_start, hits) values "
        "(%s, 'join_code', now() - interval '61 seconds', 10), "
        "(%s, 'join_code', now() - interval '30 seconds', 10), "
        "(%s, 'create_invite', now() - interval '10 minutes', 30)", (closed, open_, hourly))

    lines = prune(database_url, 100)
    assert any(re.fullmatch(r"deleted \d+ stale rate-limit counters", line)
               for line in lines), lines
    left = admin.execute("select user_id from app.rate_limit_counters where user_id = any(%s)",
                         ([closed, open_, hourly],)).fetchall()
    assert {u for (u,) in left} == {open_, hourly}
