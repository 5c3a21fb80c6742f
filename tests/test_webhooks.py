"""Webhooks (Standard Webhooks) end to end: a real receiver on 127.0.0.1 verifies
every delivery with the `standardwebhooks` package; workers run as `python -m
gateway webhooks` processes; the changes that emit events go through the suite's
gateway. The retry schedule is scaled down (WEBHOOK_RETRY_SCALE) so that a retry
comes in milliseconds; the schedule itself is checked exactly in
tests/sql/test_webhooks.sql."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from conftest import JWT_SECRET, ROOT, start_gateway, stop_gateway
from gateway.jwt_auth import mint
from gateway.settings import authenticator_url
from gateway.webhooks.config import WebhookSettings
from gateway.webhooks.send import forbidden, sign

if TYPE_CHECKING:
    from conftest import User

SERVICE = {"Authorization": "Bearer " + mint(JWT_SECRET, str(uuid.uuid4()), "service_role")}
SLOW_SECONDS = 1.5  # the slow receiver's first answer comes after the worker's timeout (1 s)


# --- the receiver -------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str
    at: float
    verified: bool

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """HTTP on 127.0.0.1: records every POST and verifies it with the secret of
    its path. Paths: /ok (200), /fail-once and /slow-once (500, or no answer in
    time, the first time an id comes; 200 after), /always-500, /redirect (302 to
    /ok), /drip (200 after 20 ms)."""

    port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def record(self, path: str, headers: dict[str, str], body: str) -> int:
        secret = self.secrets.get(path)
        try:
            verified = secret is not None and Webhook(secret).verify(body, headers) is not None
        except WebhookVerificationError:
            verified = False
        with self.lock:
            seen = sum(1 for r in self.received if r.path == path and r.id == headers["webhook-id"])
            self.received.append(Received(path, headers, body, time.time(), verified))
        return seen


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"])).decode()
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path
            seen = state.record(path, headers, body)
            status, answer = 200, b"thanks"
            if (path == "/fail-once" and seen == 0) or path == "/always-500":
                status, answer = 500, b"x" * 3000  # more than the 1 KB kept
            elif path == "/slow-once" and seen == 0:
                time.sleep(SLOW_SECONDS)
            elif path == "/drip":
                time.sleep(0.02)
            elif path == "/redirect":
                status = 302
            try:
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", state.url("/ok"))
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the worker stopped waiting (the timeout test)

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default 5 drops connections in a burst (1 s SYN retry)

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# --- workers, endpoints, waiting ----------------------------------------------


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    started: list[subprocess.Popen] = []

    def start(**env: str) -> subprocess.Popen:
        environment = {
            **os.environ, "DATABASE_URL": database_url,
            "GATEWAY_DATABASE_URL": authenticator_url(database_url),
            "JOINERY_ENV": "development", "WEBHOOK_ALLOW_PRIVATE": "on",
            "WEBHOOK_RETRY_SCALE": "0.001", "WEBHOOK_TIMEOUT": "1",
            "WEBHOOK_POLL_SECONDS": "0.2", **env}
        log = (tmp_path / f"worker-{len(started)}.log").open("w")
        process = subprocess.Popen([sys.executable, "-m", "gateway", "webhooks"], cwd=ROOT,
                                   env=environment, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def endpoints(client: httpx.Client, admin: psycopg.Connection,
              receiver: Receiver) -> Iterator[Callable[..., dict[str, Any]]]:
    """Creates endpoints through the API as service_role; deletes them afterwards
    (with their deliveries), so no other test's events go to them."""
    made: list[str] = []
    # Events of earlier tests whose endpoints are gone would only wait here.
    admin.execute("delete from app.webhook_deliveries where status = 'pending'")

    def create(path: str, event_types: list[str], host: str = "127.0.0.1",
               **extra: Any) -> dict[str, Any]:
        response = client.post("/rest/v1/rpc/create_webhook_endpoint", headers=SERVICE, json={
            "url": receiver.url(path, host), "event_types": event_types, **extra})
        assert response.status_code == 200, response.text
        endpoint = response.json()
        made.append(endpoint["id"])
        receiver.secrets[path] = endpoint["secret"]
        return endpoint

    yield create
    for endpoint_id in made:
        admin.execute("delete from app.webhook_endpoints where id = %s", (endpoint_id,))


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Polls until predicate() is truthy: a bound on waiting, not an assertion on time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def deliveries(admin: psycopg.Connection, endpoint_id: str) -> list[tuple]:
    """(event type, status, attempts) of an endpoint's deliveries, oldest first."""
    return admin.execute(
        "select e.type, d.status, d.attempts from app.webhook_deliveries d "
        "join app.webhook_events e on e.id = d.event_id where d.endpoint_id = %s "
        "order by e.created_at, e.type", (endpoint_id,)).fetchall()


def all_delivered(admin: psycopg.Connection, endpoint_id: str, count: int) -> bool:
    rows = deliveries(admin, endpoint_id)
    return len(rows) == count and all(r[1] == "delivered" for r in rows)


def attempt_log(admin: psycopg.Connection, endpoint_id: str) -> list[tuple]:
    return admin.execute(
        "select attempt, status_code, error, response_excerpt from app.webhook_attempts "
        "where endpoint_id = %s order by id", (endpoint_id,)).fetchall()


# --- flows that emit events -----------------------------------------------------


def event_with_like(client: httpx.Client, author: User, fan: User) -> tuple[str, str]:
    """An event by `author`, liked by `fan` alone: a pending group needing one approval."""
    response = client.post("/rest/v1/rpc/create_event", json={"title": "Webhook gig"},
                           headers=author.headers)
    assert response.status_code == 200, response.text
    event_id = response.json()["id"]
    response = client.post(f"/events/{event_id}/like", json={}, headers=fan.headers)
    assert response.status_code == 201, response.text
    return event_id, response.json()["id"]


def open_event(client: httpx.Client, author: User) -> str:
    response = client.post("/rest/v1/rpc/create_event", json={
        "title": "Open gig", "capacity": 100}, headers=author.headers)
    assert response.status_code == 200, response.text
    event_id = response.json()["id"]
    return str(event_id)


def burst(admin: psycopg.Connection, n: int) -> tuple[list[str], float]:
    """n registration.confirmed events in one transaction (the outbox function as
    the changes call it); their ids and the commit time."""
    with admin.transaction():
        admin.execute("""
            select private.webhook_event('registration.confirmed',
                       jsonb_build_object('registration_id', gen_random_uuid(), 'n', g))
            from generate_series(1, %s) g""", (n,))
        ids = [str(r[0]) for r in admin.execute(
            "select id from app.webhook_events where created_at = now()").fetchall()]
    return ids, time.time()


# --- tests ----------------------------------------------------------------------


def test_approval_delivered_exactly_once(
    client: httpx.Client, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    endpoint = endpoints("/ok", ["like_group.approved", "like_group.created"],
                         description="approvals")
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["event_types"] == ["like_group.approved", "like_group.created"]
    assert (endpoint["description"], endpoint["enabled"], endpoint["include_emails"]) == (
        "approvals", True, False)
    author, fan = make_user(), make_user()
    event_id, group_id = event_with_like(client, author, fan)
    response = client.post(f"/groups/{group_id}/approve", headers=author.headers)
    assert response.status_code == 200, response.text
    chat_id = response.json()["chatId"]
    start_worker()
    wait_for(lambda: all_delivered(admin, endpoint["id"], 2), "two deliveries")

    assert deliveries(admin, endpoint["id"]) == [
        ("like_group.created", "delivered", 1), ("like_group.approved", "delivered", 1)]
    got = receiver.on("/ok")
    assert len(got) == 2
    assert all(r.verified for r in got)
    by_type = {r.payload["type"]: r for r in got}
    approved = by_type["like_group.approved"]
    assert approved.payload["data"] == {"group_id": group_id, "event_id": event_id,
                                        "chat_id": chat_id}
    assert by_type["like_group.created"].payload["data"] == {
        "group_id": group_id, "event_id": event_id, "creator_id": fan.id,
        "member_ids": [fan.id]}
    row = admin.execute(
        "select id, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
        "from app.webhook_events where type = 'like_group.approved' and data ->> 'group_id' = %s",
        (group_id,)).fetchone()
    assert row is not None
    assert approved.id == str(row[0])
    assert approved.payload["timestamp"] == row[1]
    assert abs(int(approved.headers["webhook-timestamp"]) - time.time()) < 300
    assert approved.headers["content-type"] == "application/json"
    assert len(approved.headers["webhook-signature"].split(" ")) == 1
    assert "@" not in approved.body  # ids only
    assert attempt_log(admin, endpoint["id"]) == [(1, 200, None, "thanks")] * 2

    # The delivery log through the API, newest first, paginated.
    response = client.post("/rest/v1/rpc/webhook_deliveries", headers=SERVICE,
                           json={"endpoint_id": endpoint["id"], "max_rows": 1})
    assert response.status_code == 200, response.text
    page = response.json()
    assert [(i["type"], i["status"], i["attempts"]) for i in page["items"]] == [
        ("like_group.approved", "delivered", 1)]
    assert [(a["attempt"], a["status_code"], a["response_excerpt"], a["error"])
            for a in page["items"][0]["log"]] == [(1, 200, "thanks", None)]
    assert page["next_before"] == page["items"][0]["id"]
    assert "secret" not in page["endpoint"]
    response = client.post("/rest/v1/rpc/webhook_deliveries", headers=SERVICE, json={
        "endpoint_id": endpoint["id"], "max_rows": 1, "before": page["next_before"]})
    assert response.status_code == 200, response.text
    assert [i["type"] for i in response.json()["items"]] == ["like_group.created"]
    assert response.json()["next_before"] is None


def test_wrong_secret_fails_verification(
    client: httpx.Client, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    endpoint = endpoints("/ok", ["like_group.created"])
    other = endpoints("/other", ["group.member_joined"])  # another endpoint's secret
    event_with_like(client, make_user(), make_user())
    start_worker()
    wait_for(lambda: all_delivered(admin, endpoint["id"], 1), "the delivery")
    [got] = receiver.on("/ok")
    assert Webhook(endpoint["secret"]).verify(got.body, got.headers) == got.payload
    with pytest.raises(WebhookVerificationError):
        Webhook(other["secret"]).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):  # the body changed on the way
        Webhook(endpoint["secret"]).verify(got.body.replace("}", " }", 1), got.headers)


def test_retried_after_500_and_after_a_timeout(
    client: httpx.Client, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    failing = endpoints("/fail-once", ["registration.confirmed"])
    slow = endpoints("/slow-once", ["registration.confirmed"])
    author, user = make_user(), make_user()
    event_id = open_event(client, author)
    response = client.post("/rest/v1/rpc/register_for_event", json={"event_id": event_id},
                           headers=user.headers)
    assert response.status_code == 200, response.text
    start_worker()
    wait_for(lambda: all_delivered(admin, failing["id"], 1)
             and all_delivered(admin, slow["id"], 1), "both deliveries")

    assert deliveries(admin, failing["id"]) == [("registration.confirmed", "delivered", 2)]
    assert deliveries(admin, slow["id"]) == [("registration.confirmed", "delivered", 2)]
    assert attempt_log(admin, failing["id"]) == [
        (1, 500, None, "x" * 1024), (2, 200, None, "thanks")]
    assert attempt_log(admin, slow["id"]) == [
        (1, None, "timeout", None), (2, 200, None, "thanks")]
    for path in ("/fail-once", "/slow-once"):
        got = receiver.on(path)
        assert len(got) == 2
        assert got[0].id == got[1].id  # the same message, sent again
        assert all(r.verified for r in got)
        assert got[0].payload["data"]["event_id"] == event_id
        assert got[0].payload["data"]["user_id"] == user.id


def test_rolled_back_approval_sends_nothing(
    client: httpx.Client, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen], database_url: str,
) -> None:
    endpoint = endpoints("/ok", ["like_group.approved", "group_invite.revoked"])
    author, fan = make_user(), make_user()
    _, group_id = event_with_like(client, author, fan)
    start_worker()
    with psycopg.connect(database_url) as conn:  # one transaction, rolled back
        conn.execute("select set_config('request.jwt.claims', %s, true)",
                     (json.dumps({"sub": author.id, "role": "authenticated"}),))
        # As the gateway sets it (SET LOCAL ROLE would reach Citus's workers).
        conn.execute("select set_config('role', 'authenticated', true)")
        result = conn.execute("select api.approve_like_group(%s)", (group_id,)).fetchone()
        assert result is not None and result[0]["status"] == "approved"
        conn.execute("reset role")
        assert conn.execute("select count(*) from app.webhook_deliveries "
                            "where endpoint_id = %s", (endpoint["id"],)).fetchone() == (1,)
        conn.rollback()
    # A later committed change goes through the same worker: once it has arrived,
    # the approval would have too.
    response = client.post("/rest/v1/rpc/create_group", json={"name": "Crew"},
                           headers=author.headers)
    assert response.status_code == 200, response.text
    response = client.post(f"/api/groups/{response.json()['id']}/invite", json={},
                           headers=author.headers)
    assert response.status_code == 201, response.text
    invite_id = response.json()["invite"]["id"]
    response = client.post("/rest/v1/rpc/revoke_group_invite", json={"code": invite_id},
                           headers=author.headers)
    assert response.status_code == 204, response.text
    wait_for(lambda: all_delivered(admin, endpoint["id"], 1), "the revocation")
    assert [r.payload["type"] for r in receiver.on("/ok")] == ["group_invite.revoked"]
    assert admin.execute("select count(*) from app.webhook_events "
                         "where data ->> 'group_id' = %s", (group_id,)).fetchone() == (0,)
    response = client.get(f"/groups/{group_id}", headers=author.headers)
    assert response.json()["status"] == "pending"


def test_burst_of_1000_all_delivered(
    admin: psycopg.Connection, receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    endpoint = endpoints("/ok", ["registration.confirmed"])
    start_worker()
    # The worker is up and listening: the measure is of delivery only.
    wait_for(lambda: admin.execute(
        "select count(*) from pg_stat_activity where application_name = 'joinery-webhooks' "
        "and query like 'listen%%'").fetchone() == (1,), "the worker")
    ids, committed = burst(admin, 1000)
    assert len(ids) == 1000
    wait_for(lambda: len(receiver.on("/ok")) >= 1000, "1000 deliveries", timeout=180)
    wait_for(lambda: all_delivered(admin, endpoint["id"], 1000), "1000 marked delivered")
    got = receiver.on("/ok")
    assert sorted(r.id for r in got) == sorted(ids)  # each once, none lost
    assert all(r.verified for r in got)
    created = dict(admin.execute(
        "select id::text, extract(epoch from created_at)::float8 from app.webhook_events "
        "where id = any(%s::uuid[])", (ids,)).fetchall())
    latencies = sorted(r.at - created[r.id] for r in got)
    span = max(r.at for r in got) - committed
    print(f"\nwebhook burst: 1000 events delivered in {span:.2f} s "
          f"({1000 / span:.0f}/s); latency from commit p50 "
          f"{statistics.median(latencies) * 1000:.0f} ms, p95 "
          f"{latencies[949] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")


def test_worker_killed_in_the_middle_loses_nothing(
    admin: psycopg.Connection, receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    endpoint = endpoints("/drip", ["registration.confirmed"])
    ids, _ = burst(admin, 300)
    first = start_worker(WEBHOOK_LEASE_SECONDS="2")
    wait_for(lambda: len(receiver.on("/drip")) >= 60, "some deliveries")
    first.kill()  # SIGKILL: requests in flight, leases held
    assert first.wait() == -signal.SIGKILL
    leased = admin.execute(
        "select count(*) from app.webhook_deliveries where endpoint_id = %s "
        "and status = 'pending' and lease is not null", (endpoint["id"],)).fetchone()
    assert leased is not None and leased[0] > 0  # the kill left leases behind
    start_worker(WEBHOOK_LEASE_SECONDS="2")
    wait_for(lambda: all_delivered(admin, endpoint["id"], 300), "300 delivered", timeout=120)
    got = receiver.on("/drip")
    assert {r.id for r in got} == set(ids)
    assert all(r.verified for r in got)
    print(f"\nworker killed: 300 events, {len(got)} requests "
          f"({len(got) - 300} sent again after the kill)")


def test_private_addresses_refused(
    client: httpx.Client, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    literal = endpoints("/ok", ["like_group.created"])
    named = endpoints("/ok", ["like_group.created"], host="localhost")
    event_with_like(client, make_user(), make_user())
    start_worker(WEBHOOK_ALLOW_PRIVATE="off", WEBHOOK_RETRY_SCALE="1")
    wait_for(lambda: len(attempt_log(admin, literal["id"])) == 1
             and len(attempt_log(admin, named["id"])) == 1, "the first attempts")
    assert attempt_log(admin, literal["id"]) == [
        (1, None, "refused: 127.0.0.1 resolves to a non-public address (127.0.0.1)", None)]
    [(attempt, status, error, excerpt)] = attempt_log(admin, named["id"])
    assert (attempt, status, excerpt) == (1, None, None)
    assert error in ("refused: localhost resolves to a non-public address (127.0.0.1)",
                     "refused: localhost resolves to a non-public address (::1)")
    assert receiver.on("/ok") == []
    # Retried on the schedule: the next attempt 5 s after the first.
    assert deliveries(admin, literal["id"]) == [("like_group.created", "pending", 1)]


def test_redirects_are_not_followed(
    client: httpx.Client, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    endpoint = endpoints("/redirect", ["like_group.created"])
    event_with_like(client, make_user(), make_user())
    start_worker(WEBHOOK_RETRY_SCALE="1")
    wait_for(lambda: attempt_log(admin, endpoint["id"]), "the first attempt")
    assert attempt_log(admin, endpoint["id"]) == [(1, 302, None, "thanks")]
    assert len(receiver.on("/redirect")) == 1
    assert receiver.on("/ok") == []


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
    ("169.254.169.254", True), ("100.64.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True),
    ("::1", True), ("fe80::1", True), ("fd00:ec2::254", True), ("::ffff:127.0.0.1", True),
    ("::ffff:10.0.0.1", True), ("93.184.216.34", False), ("2606:4700:4700::1111", False),
    ("::ffff:93.184.216.34", False),
])
def test_forbidden_addresses(address: str, refused: bool) -> None:
    assert forbidden(address) is refused


def test_rotation_signs_with_both_secrets(
    client: httpx.Client, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    endpoint = endpoints("/ok", ["like_group.created"])
    old = endpoint["secret"]
    response = client.post("/rest/v1/rpc/rotate_webhook_secret", headers=SERVICE,
                           json={"endpoint_id": endpoint["id"]})
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert set(rotated) == {"id", "secret", "previous_secret_until"}
    new = rotated["secret"]
    assert new.startswith("whsec_") and new != old
    assert admin.execute(
        "select previous_secret_until = updated_at + interval '24 hours' "
        "from app.webhook_endpoints where id = %s", (endpoint["id"],)).fetchone() == (True,)
    event_with_like(client, make_user(), make_user())
    start_worker()
    wait_for(lambda: all_delivered(admin, endpoint["id"], 1), "the delivery")
    [got] = receiver.on("/ok")
    entries = got.headers["webhook-signature"].split(" ")
    timestamp = int(got.headers["webhook-timestamp"])
    keys = [Webhook(s)._whsecret for s in (new, old)]
    assert entries == sign(keys, got.id, timestamp, got.body).split(" ")
    assert all(e.startswith("v1,") for e in entries) and len(entries) == 2
    assert Webhook(new).verify(got.body, got.headers) == got.payload
    assert Webhook(old).verify(got.body, got.headers) == got.payload


def test_emails_only_for_endpoints_that_opted_in(
    client: httpx.Client, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    plain = endpoints("/ok", ["pair_invite.sent"])
    opted = endpoints("/other", ["pair_invite.sent"], include_emails=True)
    assert opted["include_emails"] is True
    author, inviter = make_user(), make_user()
    event_id = open_event(client, author)
    response = client.post("/rest/v1/rpc/create_pair_invite", headers=inviter.headers,
                           json={"event_id": event_id, "invitee_email": "Friend@Example.com"})
    assert response.status_code == 200, response.text
    invite = response.json()
    start_worker()
    wait_for(lambda: all_delivered(admin, plain["id"], 1)
             and all_delivered(admin, opted["id"], 1), "both deliveries")
    [bare] = receiver.on("/ok")
    [full] = receiver.on("/other")
    data = {"invite_id": invite["id"], "event_id": event_id, "inviter_id": inviter.id,
            "expires_at": bare.payload["data"]["expires_at"]}
    assert bare.payload["data"] == data
    assert datetime.fromisoformat(data["expires_at"]) == datetime.fromisoformat(
        invite["expires_at"])
    assert "@" not in bare.body
    assert full.payload["data"] == {**data, "invitee_email": "friend@example.com",
                                    "inviter_email": inviter.email}
    assert bare.verified and full.verified


def test_replay_sends_the_event_again(
    client: httpx.Client, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    endpoint = endpoints("/ok", ["like_group.created"])
    event_with_like(client, make_user(), make_user())
    start_worker()
    wait_for(lambda: all_delivered(admin, endpoint["id"], 1), "the delivery")
    [first] = receiver.on("/ok")
    response = client.post("/rest/v1/rpc/replay_webhook", headers=SERVICE,
                           json={"event_id": first.id})
    assert response.status_code == 200, response.text
    assert response.json() == {"event_id": first.id, "deliveries": 1}
    wait_for(lambda: len(receiver.on("/ok")) == 2 and all_delivered(admin, endpoint["id"], 1),
             "the replay")
    second = receiver.on("/ok")[1]
    assert (second.id, second.body, second.verified) == (first.id, first.body, True)
    response = client.post("/rest/v1/rpc/replay_webhook", headers=SERVICE,
                           json={"event_id": str(uuid.uuid4())})
    assert response.status_code == 404, response.text
    assert response.json()["message"] == "Webhook event not found."


def test_endpoint_management(client: httpx.Client, admin: psycopg.Connection,
                             endpoints: Callable[..., dict[str, Any]]) -> None:
    endpoint = endpoints("/ok", ["pair_invite.sent"])
    response = client.post("/rest/v1/rpc/update_webhook_endpoint", headers=SERVICE, json={
        "endpoint_id": endpoint["id"], "event_types": ["pair_invite.revoked", "pair_invite.sent"],
        "enabled": False, "description": "paused"})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["event_types"], updated["enabled"], updated["description"],
            updated["url"]) == (["pair_invite.revoked", "pair_invite.sent"], False, "paused",
                                endpoint["url"])
    assert updated["disabled_reason"] == "disabled by an operator"
    assert "secret" not in updated
    response = client.post("/rest/v1/rpc/update_webhook_endpoint", headers=SERVICE, json={
        "endpoint_id": endpoint["id"], "enabled": True})
    assert (response.json()["enabled"], response.json()["disabled_at"]) == (True, None)
    for body, message in [
        ({"url": "ftp://example.com/", "event_types": ["pair_invite.sent"]},
         "url must be an http:// or https:// URL without credentials."),
        ({"url": "https://user:pw@example.com/", "event_types": ["pair_invite.sent"]},
         "url must be an http:// or https:// URL without credentials."),
        ({"url": "https://example.com/", "event_types": ["pair_invite.sent", "nope.nope"]},
         "Unknown event type 'nope.nope'."),
        ({"url": "https://example.com/", "event_types": []},
         "event_types must name at least one type."),
    ]:
        response = client.post("/rest/v1/rpc/create_webhook_endpoint", headers=SERVICE,
                               json=body)
        assert response.status_code == 400, response.text
        assert response.json()["message"] == message
    response = client.post("/rest/v1/rpc/delete_webhook_endpoint", headers=SERVICE,
                           json={"endpoint_id": endpoint["id"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": endpoint["id"], "deleted": True}
    response = client.post("/rest/v1/rpc/delete_webhook_endpoint", headers=SERVICE,
                           json={"endpoint_id": endpoint["id"]})
    assert response.status_code == 404, response.text
    assert admin.execute("select count(*) from app.webhook_endpoints where id = %s",
                         (endpoint["id"],)).fetchone() == (0,)


@pytest.mark.parametrize(("fn", "body"), [
    ("create_webhook_endpoint", {"url": "https://example.com/",
                                 "event_types": ["group.member_joined"]}),
    ("update_webhook_endpoint", {"endpoint_id": str(uuid.uuid4()), "enabled": False}),
    ("delete_webhook_endpoint", {"endpoint_id": str(uuid.uuid4())}),
    ("rotate_webhook_secret", {"endpoint_id": str(uuid.uuid4())}),
    ("webhook_deliveries", {"endpoint_id": str(uuid.uuid4())}),
    ("replay_webhook", {"event_id": str(uuid.uuid4())}),
])
def test_service_role_only(client: httpx.Client, make_user: Callable[..., User], fn: str,
                           body: dict[str, Any]) -> None:
    response = client.post(f"/rest/v1/rpc/{fn}", json=body, headers=make_user().headers)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "42501"
    response = client.post(f"/rest/v1/rpc/{fn}", json=body)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "42501"
    if fn != "create_webhook_endpoint":  # nothing to act on: service_role gets 404
        response = client.post(f"/rest/v1/rpc/{fn}", json=body, headers=SERVICE)
        assert response.status_code == 404, response.text


def test_metrics(client: httpx.Client, admin: psycopg.Connection,
                 endpoints: Callable[..., dict[str, Any]]) -> None:
    endpoint = endpoints("/ok", ["registration.confirmed"])
    burst(admin, 3)
    admin.execute("update app.webhook_deliveries set status = 'failed', failed_at = now() "
                  "where id = (select id from app.webhook_deliveries where endpoint_id = %s "
                  "limit 1)", (endpoint["id"],))
    pending, failed = admin.execute(
        "select private.webhook_pending_count(), private.webhook_failed_count()").fetchone()
    assert pending == 2
    response = client.get("/metrics")
    assert response.status_code == 200
    lines = response.text.splitlines()
    # Gauges read from the database (observe.GAUGES, "mostrecent"); prometheus-client
    # writes floats.
    assert "# TYPE joinery_webhook_pending gauge" in lines
    assert f"joinery_webhook_pending {float(pending)}" in lines
    assert "# TYPE joinery_webhook_failed_total gauge" in lines
    assert f"joinery_webhook_failed_total {float(failed)}" in lines


def test_the_gateway_delivers_with_webhook_worker_on(
    database_url: str, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]], tmp_path: Path,
) -> None:
    endpoint = endpoints("/ok", ["like_group.created"])
    gateway = start_gateway(database_url, tmp_path / "gateway.log", WEBHOOK_WORKER="on",
                            WEBHOOK_ALLOW_PRIVATE="on")
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as other:
            _, group_id = event_with_like(other, make_user(), make_user())
        wait_for(lambda: all_delivered(admin, endpoint["id"], 1), "the delivery")
    finally:
        stop_gateway(gateway)
    [got] = receiver.on("/ok")
    assert got.verified
    assert got.payload["data"]["group_id"] == group_id


def test_every_event_type(
    client: httpx.Client, admin: psycopg.Connection, make_user: Callable[..., User],
    receiver: Receiver, endpoints: Callable[..., dict[str, Any]],
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    types = ["group.member_joined", "group_invite.revoked", "like_group.created",
             "like_group.approved", "like_group.rejected", "pair_invite.sent",
             "pair_invite.accepted", "pair_invite.declined", "pair_invite.revoked",
             "registration.confirmed", "registration.cancelled"]
    endpoint = endpoints("/ok", types)
    assert endpoint["event_types"] == sorted(types)
    owner, joiner, author, fan = make_user(), make_user(), make_user(), make_user()
    inviter, partner, decliner, revoker = make_user(), make_user(), make_user(), make_user()
    expected: list[tuple[str, dict[str, Any]]] = []

    def ok(response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    # A group: someone joins by code, then the owner revokes the code.
    group = ok(client.post("/rest/v1/rpc/create_group", json={"name": "Crew"},
                           headers=owner.headers))
    invite = ok(client.post(f"/api/groups/{group['id']}/invite", json={},
                            headers=owner.headers), 201)["invite"]
    ok(client.post("/api/groups/join", json={"code": invite["code"]}, headers=joiner.headers))
    expected.append(("group.member_joined", {"group_id": group["id"], "user_id": joiner.id,
                                             "invite_id": invite["id"]}))
    ok(client.post("/rest/v1/rpc/revoke_group_invite", json={"code": invite["id"]},
                   headers=owner.headers), 204)
    expected.append(("group_invite.revoked", {"invite_id": invite["id"],
                                              "group_id": group["id"], "revoked_by": owner.id}))

    # A like group, rejected.
    event_id, group_id = event_with_like(client, author, fan)
    expected.append(("like_group.created", {"group_id": group_id, "event_id": event_id,
                                            "creator_id": fan.id, "member_ids": [fan.id]}))
    ok(client.post(f"/groups/{group_id}/reject", headers=author.headers))
    expected.append(("like_group.rejected", {"group_id": group_id, "event_id": event_id}))

    # Pair invitations: accepted (two registrations, one then cancelled), declined, revoked.
    open_id = open_event(client, author)

    def pair_invite(who: User) -> dict[str, Any]:
        created = ok(client.post(f"/api/events/{open_id}/invite", json={},
                                 headers=who.headers), 201)
        expected.append(("pair_invite.sent", {"invite_id": created["id"], "event_id": open_id,
                                              "inviter_id": who.id,
                                              "expires_at": created["expires_at"]}))
        return dict(created)

    accepted = pair_invite(inviter)
    token = ok(client.post("/api/invites/join", json={"code": accepted["short_code"]},
                           headers=partner.headers))["token"]
    pair_id = ok(client.post(f"/api/invites/{token}/accept", headers=partner.headers))["pair_id"]
    expected.append(("pair_invite.accepted", {
        "invite_id": accepted["id"], "event_id": open_id, "inviter_id": inviter.id,
        "invitee_id": partner.id, "pair_id": pair_id}))
    registrations = dict(admin.execute(
        "select user_id::text, id::text from app.registrations where pair_id = %s",
        (pair_id,)).fetchall())
    for user in sorted((inviter, partner), key=lambda u: registrations[u.id]):
        expected.append(("registration.confirmed", {
            "registration_id": registrations[user.id], "event_id": open_id, "user_id": user.id,
            "pair_id": pair_id}))
    ok(client.post("/rest/v1/rpc/cancel_registration", json={"event_id": open_id},
                   headers=partner.headers), 204)
    expected.append(("registration.cancelled", {
        "registration_id": registrations[partner.id], "event_id": open_id,
        "user_id": partner.id, "pair_id": pair_id}))
    declined = pair_invite(decliner)
    token = ok(client.post("/api/invites/join", json={"code": declined["short_code"]},
                           headers=partner.headers))["token"]
    ok(client.post(f"/api/invites/{token}/decline", headers=partner.headers))
    expected.append(("pair_invite.declined", {
        "invite_id": declined["id"], "event_id": open_id, "inviter_id": decliner.id,
        "invitee_id": partner.id}))
    revoked = pair_invite(revoker)
    ok(client.post("/rest/v1/rpc/revoke_pair_invite", json={"invite_id": revoked["id"]},
                   headers=revoker.headers))
    expected.append(("pair_invite.revoked", {"invite_id": revoked["id"], "event_id": open_id,
                                             "inviter_id": revoker.id}))

    start_worker()
    wait_for(lambda: all_delivered(admin, endpoint["id"], len(expected)), "every delivery")
    got = receiver.on("/ok")
    assert all(r.verified for r in got)
    assert len({r.id for r in got}) == len(got) == len(expected)  # each once
    received = [(r.payload["type"], r.payload["data"]) for r in got]
    for item in received:  # timestamps as PostgreSQL writes them, compared as instants
        if "expires_at" in item[1]:
            item[1]["expires_at"] = datetime.fromisoformat(item[1]["expires_at"])
    for item in expected:
        if "expires_at" in item[1]:
            item[1]["expires_at"] = datetime.fromisoformat(item[1]["expires_at"])
    def key(item: tuple[str, dict[str, Any]]) -> str:
        return json.dumps(item, sort_keys=True, default=str)

    assert sorted(received, key=key) == sorted(expected, key=key)
    assert {t for t, _ in received} == set(types) - {"like_group.approved"}


def test_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBHOOK_DISABLE_AFTER", "WEBHOOK_ALLOW_PRIVATE", "WEBHOOK_WORKER",
                 "WEBHOOK_TIMEOUT", "WEBHOOK_LEASE_SECONDS", "WEBHOOK_RETENTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOINERY_ENV", "production")
    cfg = WebhookSettings.from_env()
    assert (cfg.disable_after, cfg.allow_private, cfg.worker, cfg.timeout,
            cfg.lease_seconds, cfg.retention) == (432000, False, False, 15, 60, 2592000)
    monkeypatch.setenv("JOINERY_ENV", "development")
    assert WebhookSettings.from_env().allow_private is True
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "off")
    assert WebhookSettings.from_env().allow_private is False
    for value, seconds in [("12h", 43200), ("30m", 1800), ("45s", 45), ("90", 90),
                           ("1.5d", 129600)]:
        monkeypatch.setenv("WEBHOOK_DISABLE_AFTER", value)
        assert WebhookSettings.from_env().disable_after == seconds
    monkeypatch.setenv("WEBHOOK_DISABLE_AFTER", "soon")
    with pytest.raises(ValueError, match="WEBHOOK_DISABLE_AFTER must be a duration"):
        WebhookSettings.from_env()
