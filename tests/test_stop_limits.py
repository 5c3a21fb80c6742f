"""The stop link under a flood (issue 18, item 2): api.stop_invitations, the one
definer function anon may run, is counted per client address (the gateway's peer
address, `request.client_addr`) and per token; a repeat writes nothing, and the
refusals of one address write one audit entry per window."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from conftest import GatewayProcess, start_gateway, stop_gateway, within_one_window

CLIENTS = 50
CALLS_EACH = 10
STOP_BUCKETS = ("stop_client", "stop_token")


def flood(url: str, bodies: list[dict[str, str]]) -> list[httpx.Response]:
    """POSTs the bodies to stop_invitations from CLIENTS threads, each with its own
    keep-alive connection, all released together."""
    barrier = threading.Barrier(CLIENTS)
    share = len(bodies) // CLIENTS

    def send(part: list[dict[str, str]]) -> list[httpx.Response]:
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.get("/healthz").status_code == 200  # connected before the race
            barrier.wait(timeout=60)
            return [http.post("/rest/v1/rpc/stop_invitations", json=body) for body in part]

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        parts = pool.map(send, [bodies[i * share:(i + 1) * share] for i in range(CLIENTS)])
        return [r for part in parts for r in part]


@pytest.fixture
def fresh_window(admin: psycopg.Connection) -> Iterator[None]:
    """No earlier stop-link counters (every test of the session comes from
    127.0.0.1), and at least a minute left in the current refusal window (aligned
    to the epoch), so that the refusals of the test fall in one window. The
    counters are cleared after too, for the tests that follow."""
    admin.execute("delete from app.rate_limit_counters where bucket = any(%s)",
                  (list(STOP_BUCKETS),))
    # A refusal of an earlier test in this window (all come from 127.0.0.1) would
    # already hold the window's one audit row: the count starts from none.
    admin.execute("delete from app.audit_refusals where action = 'mail.stop'")
    window = admin.execute("select max(window_seconds) from app.rate_limits "
                           "where bucket = any(%s)", (list(STOP_BUCKETS),)).fetchone()[0]
    within_one_window(window, margin=60)
    yield
    admin.execute("delete from app.rate_limit_counters where bucket = any(%s)",
                  (list(STOP_BUCKETS),))


def stop_token(admin: psycopg.Connection, email: str) -> str:
    return admin.execute("select private.mail_stop_token(%s)", (email,)).fetchone()[0]


def test_a_flood_of_one_link_writes_two_audit_rows(gateway: GatewayProcess, admin,
                                                   fresh_window: None) -> None:
    email = f"flooded-{uuid.uuid4().hex[:12]}@example.com"
    token = stop_token(admin, email)
    since = admin.execute("select clock_timestamp()").fetchone()[0]

    responses = flood(gateway.url, [{"token": token}] * (CLIENTS * CALLS_EACH))

    # From one address: 30 calls pass its gate, of which 5 pass the token's.
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 5, 429: 495}, statuses
    for response in responses:
        if response.status_code == 200:
            assert response.json() == {"stopped": True}
        else:
            retry = int(response.headers["Retry-After"])
            assert 1 <= retry <= 600
            assert response.json() == {
                "code": "PT429", "message": "Too many attempts. Try again later.",
                "details": f"retry after {retry} seconds", "hint": None}
    rows = admin.execute(
        "select actor_id, outcome, status, details::text from app.audit_log "
        "where action = 'mail.stop' and created_at >= %s order by id", (since,)).fetchall()
    assert rows == [(None, "stopped", 200, "{}"),
                    (None, "rate_limited", 429, '{"counted_in": "audit_refusals"}')]
    refused = admin.execute(
        "select refused from app.audit_refusals where action = 'mail.stop' "
        "and actor_id = private.client_key('127.0.0.1') and last_at >= %s", (since,)).fetchall()
    assert refused == [(495,)]
    assert admin.execute("select count(*) from app.mail_stops where email = %s",
                         (email,)).fetchone() == (1,)


def test_the_script_mode_passes_the_client_address_too(database_url: str, tmp_path: Path,
                                                       admin, fresh_window: None) -> None:
    """The session's gateway runs in the prepared mode; this one sends its
    transactions as one simple-query script, with the same setup."""
    gateway = start_gateway(database_url, tmp_path / "gateway.log")
    try:
        responses = flood(gateway.url, [{"token": f"unknown-{i}"} for i in range(CLIENTS)])
    finally:
        stop_gateway(gateway)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {404: 30, 429: 20}, statuses
    hits = admin.execute(
        "select bucket, user_id = private.client_key('127.0.0.1'), hits "
        "from app.rate_limit_counters where bucket = any(%s)",
        (list(STOP_BUCKETS),)).fetchall()
    assert hits == [("stop_client", True, 30)]


def test_the_one_click_post_counts_against_the_client_too(gateway: GatewayProcess, admin,
                                                          fresh_window: None) -> None:
    """RFC 8058's one-click POST to /invite/stop (the invites branch) goes through
    the same limits as the page's call: the client's address reaches SQL."""
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        answers = [http.post(f"/invite/stop?token=unknown-{i}",
                             data={"List-Unsubscribe": "One-Click"}) for i in range(32)]
    assert Counter(r.status_code for r in answers) == {404: 30, 429: 2}
    refused = [r for r in answers if r.status_code == 429]
    assert all(1 <= int(r.headers["Retry-After"]) <= 600 for r in refused)
    hits = admin.execute(
        "select bucket, user_id = private.client_key('127.0.0.1'), hits "
        "from app.rate_limit_counters where bucket = any(%s)",
        (list(STOP_BUCKETS),)).fetchall()
    assert hits == [("stop_client", True, 30)]
