"""Event streams under abuse (issue 11, item 3), against real gateways on loopback,
bounded in count and time: streams capped per user and per process (429 / 503
with Retry-After, before any database work), a stream ends at its token's exp,
the 20-topic can_subscribe cost is paid only by admitted streams, and /healthz
keeps answering throughout."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import jwt
import psycopg
import pytest
from test_realtime import SSE, Frame, Subscriber, create_event, on

from conftest import JWT_SECRET, start_gateway, stop_gateway
from gateway.jwt_auth import mint

if TYPE_CHECKING:
    from conftest import GatewayProcess, User

TIMEOUT = 10.0


@contextlib.contextmanager
def stream(base_url: str, token: str, topics: list[str]) -> Iterator[httpx.Response]:
    """An SSE request held open; its response (read up to the ready frame if 200)."""
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as http, http.stream(
            "GET", SSE, params=[("topic", t) for t in topics],
            headers={"Authorization": f"Bearer {token}"}) as response:
        if response.status_code == 200:
            lines = response.iter_lines()
            assert next(lines) == "event: ready"
        else:
            response.read()
        yield response


def healthy(base_url: str) -> None:
    response = httpx.get(f"{base_url}/healthz", timeout=TIMEOUT)
    assert response.status_code == 200, response.text


@pytest.fixture
def capped(database_url: str, tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = start_gateway(database_url, tmp_path / "capped.log", SSE_MAX_STREAMS="5",
                         REALTIME_PER_USER="3")
    yield proc
    stop_gateway(proc)
    assert "Traceback" not in proc.log(), proc.log()


def test_streams_capped_per_user_and_per_process(capped: GatewayProcess, make_user) -> None:
    a, b, c = make_user(), make_user(), make_user()
    with contextlib.ExitStack() as held:
        mine = [held.enter_context(stream(capped.url, a.token, [f"user:{a.id}"]))
                for _ in range(3)]
        assert [r.status_code for r in mine] == [200, 200, 200]
        with stream(capped.url, a.token, [f"user:{a.id}"]) as over:
            assert over.status_code == 429
            assert over.headers["retry-after"] == "5"
            assert over.json() == {
                "code": "PT429", "details": None, "hint": None,
                "message": "Too many realtime subscriptions for this user "
                           "(at most 3 per process)."}
        healthy(capped.url)
        theirs = [held.enter_context(stream(capped.url, b.token, [f"user:{b.id}"]))
                  for _ in range(2)]
        assert [r.status_code for r in theirs] == [200, 200]
        with stream(capped.url, c.token, [f"user:{c.id}"]) as full:
            assert full.status_code == 503
            assert full.headers["retry-after"] == "5"
            assert full.json()["message"] == (
                "Too many event streams on this server; try again later.")
        healthy(capped.url)
        metrics = httpx.get(f"{capped.url}/metrics", timeout=TIMEOUT).text
        assert "\njoinery_realtime_sse_streams 5.0\n" in metrics, metrics

    # Closed streams give their slots back (the server notices the disconnect).
    deadline = time.monotonic() + 5
    while True:
        with stream(capped.url, c.token, [f"user:{c.id}"]) as again:
            if again.status_code == 200 or time.monotonic() > deadline:
                break
        time.sleep(0.1)
    assert again.status_code == 200
    # Refused requests held no slot: a, with none open, may open 3 again.
    with contextlib.ExitStack() as held:
        reopened = [held.enter_context(stream(capped.url, a.token, [f"user:{a.id}"]))
                    for _ in range(3)]
        assert [r.status_code for r in reopened] == [200, 200, 200]


def test_stream_ends_at_token_expiry(gateway: GatewayProcess, make_user) -> None:
    user: User = make_user()
    token = mint(JWT_SECRET, user.id, expires_in=2)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    subscriber = Subscriber(gateway.url, [f"user:{user.id}"], token=token,
                            until=on("expired"))
    subscriber.wait_ready()
    subscriber.join()
    [frame] = subscriber.events("expired")
    assert isinstance(frame, Frame) and frame.data == "{}"
    arrived = time.time() - (time.perf_counter() - frame.received)  # wall clock
    assert exp - 0.01 <= arrived < exp + 3  # at exp, not before
    assert [f.event for f in subscriber.frames if f.event] == ["ready", "expired"]


@pytest.mark.superuser("sets track_functions on role authenticator")
def test_subscription_checks_are_paid_only_by_admitted_streams(
        database_url: str, tmp_path: Path, admin: psycopg.Connection, make_user) -> None:
    """One user, 12 concurrent streams of 20 topics each, 3 allowed: exactly 3 x 20
    can_subscribe calls run (pg_stat_user_functions), not 240; /healthz answers
    while they do."""
    user = make_user()
    author = make_user()
    groups = []
    topics = [f"user:{user.id}"]
    admin.execute("alter role authenticator set track_functions = 'pl'")
    proc = None
    try:
        proc = start_gateway(database_url, tmp_path / "checks.log", REALTIME_PER_USER="3",
                             REALTIME_AUTH_CONCURRENCY="2", SSE_HEARTBEAT="30")
        with httpx.Client(base_url=proc.url, timeout=TIMEOUT) as http:
            for _ in range(19):
                event_id = create_event(http, author)
                response = http.post(f"/events/{event_id}/like", json={},
                                     headers=user.headers)
                assert response.status_code == 201, response.text
                groups.append(response.json()["id"])
        topics += [f"group:{g}" for g in groups]
        assert len(topics) == 20
        before = can_subscribe_calls(admin)

        statuses: list[int] = []
        release = threading.Event()

        def one() -> None:
            with stream(proc.url, user.token, topics) as response:
                statuses.append(response.status_code)
                if response.status_code == 200:
                    release.wait(TIMEOUT)

        threads = [threading.Thread(target=one) for _ in range(12)]
        for thread in threads:
            thread.start()
        healthy(proc.url)
        deadline = time.monotonic() + TIMEOUT
        while len(statuses) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        healthy(proc.url)
        release.set()
        for thread in threads:
            thread.join(TIMEOUT)
        assert sorted(statuses) == [200] * 3 + [429] * 9
    finally:
        if proc is not None:
            stop_gateway(proc)
        admin.execute("alter role authenticator reset track_functions")
    # The gateway's backends flush their statistics as they exit.
    deadline = time.monotonic() + 5
    while can_subscribe_calls(admin) - before < 60 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert can_subscribe_calls(admin) - before == 60


def can_subscribe_calls(admin: psycopg.Connection) -> int:
    admin.execute("select pg_stat_clear_snapshot()")
    row = admin.execute(
        "select coalesce(sum(calls), 0) from pg_stat_user_functions "
        "where schemaname = 'api' and funcname = 'can_subscribe'").fetchone()
    assert row is not None
    return int(row[0])

