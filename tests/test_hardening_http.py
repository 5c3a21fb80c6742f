"""Hardening of issue 11 over HTTP against a real gateway: one envelope recipient
per message, no user text in mail, delivery attempts capped and counted in
/metrics, the per-recipient mail limit and the refusal counts under concurrency,
the author/member rule under concurrency, a token bound to its holder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
from test_mail import create_event, email_invite, outbox
from test_pairs_concurrency import at_once

from conftest import ROOT, free_port, start_gateway, stop_gateway, within_one_window
from gateway.settings import authenticator_url
from smtp_sink import SmtpSink, wait_until

if TYPE_CHECKING:
    from conftest import User

APP_URL = "https://app.example"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink.on_a_free_port() as server:
        yield server


def metric(client: httpx.Client, name: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf"^joinery_{name} (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def queue_raw(admin: psycopg.Connection, to_email: str, code: str = "ABCDEFGH") -> str:
    """A message put in the outbox directly, as an older or damaged row would be."""
    row = admin.execute(
        "insert into app.mail_outbox (to_email, template, data) values (%s, 'pair_invite', "
        "jsonb_build_object('short_code', %s::text, 'expires_at', now())) returning id::text",
        (to_email, code)).fetchone()
    assert row is not None
    admin.execute("notify joinery_mail")
    return str(row[0])


def test_one_envelope_recipient_and_no_user_text(database_url: str, tmp_path: Path,
                                                 sink: SmtpSink, make_user, admin,
                                                 client: httpx.Client) -> None:
    # Refused by the API: a list of addresses, header injection.
    inviter = make_user("Support Team: reset your password at http://evil.example")
    event_id = create_event(client, inviter, title="Password reset: http://evil.example/x")
    for bad in ("root,postmaster,victim@example.com", "victim@example.com\r\nBcc: x@example.com",
                "Victim <victim@example.com>"):
        response = client.post(f"/api/events/{event_id}/invite", json={"email": bad},
                               headers=inviter.headers)
        assert response.status_code == 400, response.text
        assert response.json() == {"code": "PT400", "details": "invitee_email", "hint": None,
                                   "message": "invitee_email is not a valid email address."}

    gateway = start_gateway(database_url, tmp_path / "gateway.log",
                            SMTP_URL=f"smtp://127.0.0.1:{sink.port}", APP_URL=APP_URL,
                            MAIL_POLL_SECONDS="0.3")
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            failed_before = metric(http, "mail_failed")
            # A damaged row (as stored before addresses were checked) is never sent.
            listed = f"a-{uuid.uuid4().hex[:8]}@example.com, b-{uuid.uuid4().hex[:8]}@example.com"
            bad_id = queue_raw(admin, listed)
            victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
            email_invite(http, inviter, event_id, victim)
            arrived = wait_until(lambda: sink.to(victim), timeout=15, what="the invitation")

            def failed() -> list[Any]:
                return admin.execute("select attempts, failed_at, last_error from "
                                     "app.mail_outbox where id = %s and failed_at is not null",
                                     (bad_id,)).fetchall()

            row = wait_until(failed, timeout=15, what="the damaged row marked failed")
            assert metric(http, "mail_failed") >= failed_before + 1
    finally:
        stop_gateway(gateway)

    assert row[0][0] == 1 and row[0][2].startswith("Undeliverable: ")
    assert [r.rcpt_tos for r in sink.received if listed.split(",")[0] in r.rcpt_tos] == []
    assert all(len(r.rcpt_tos) == 1 for r in sink.received)
    assert arrived[0].rcpt_tos == (victim,)
    message = arrived[0].message
    assert message["Subject"] == "You are invited to register as a pair"
    everything = arrived[0].content.decode("utf-8", "replace")
    for text in ("Support Team", "evil.example", "Password reset"):
        assert text not in everything
    assert message["To"] == victim


def test_delivery_gives_up_after_max_attempts(database_url: str, tmp_path: Path, admin,
                                              client: httpx.Client) -> None:
    port = free_port()  # nothing listens here
    environment = {
        "GATEWAY_DATABASE_URL": authenticator_url(database_url),
        "SMTP_URL": f"smtp://127.0.0.1:{port}", "APP_URL": APP_URL,
        "MAIL_POLL_SECONDS": "0.2", "MAIL_RETRY_MAX": "1", "MAIL_MAX_ATTEMPTS": "3",
    }
    failed_before = metric(client, "mail_failed")
    address = f"unreachable-{uuid.uuid4().hex[:8]}@example.com"
    message_id = queue_raw(admin, address, "HJKMNPQR")
    mailer = subprocess.Popen([sys.executable, "-m", "gateway", "mailer"], cwd=ROOT,
                              env={**os.environ, **environment},
                              stdout=(tmp_path / "mailer.log").open("w"),
                              stderr=subprocess.STDOUT)
    try:
        rows = wait_until(lambda: [r for r in outbox(admin, address) if r["attempts"] >= 3],
                          timeout=30, what="three attempts")
        time.sleep(3)  # more tries would show here
        final = admin.execute("select attempts, failed_at is not null, sent_at from "
                              "app.mail_outbox where id = %s", (message_id,)).fetchone()
    finally:
        mailer.terminate()
        mailer.wait(timeout=10)
    assert rows
    assert final == (3, True, None)
    assert metric(client, "mail_failed") >= failed_before + 1


def test_per_recipient_limit_holds_under_concurrent_inviters(gateway, client: httpx.Client,
                                                             make_user, admin) -> None:
    for _ in range(3):
        address = f"popular-{uuid.uuid4().hex[:8]}@example.com"
        inviters = [make_user() for _ in range(12)]
        events = [create_event(client, inviter) for inviter in inviters]
        responses = at_once(gateway, [
            (f"/api/events/{event_id}/invite", {"email": address.upper()}, inviter.headers)
            for inviter, event_id in zip(inviters, events, strict=True)])
        assert [r.status_code for r in responses] == [201] * 12, [r.text for r in responses]
        assert len({tuple(sorted(r.json())) for r in responses}) == 1  # one shape for all
        invites = admin.execute("select count(*) from app.pair_invites where invitee_email = %s",
                                (address,)).fetchone()
        assert invites == (12,)
        assert len(outbox(admin, address)) == 3


def test_refusals_are_counted_per_window_under_concurrency(gateway, make_user, admin) -> None:
    user = make_user()
    within_one_window(60)  # the twenty refusals: one audit row for their window
    responses = at_once(gateway, [
        ("/rest/v1/rpc/join_group", {"code": str(uuid.uuid4())}, user.headers)
        for _ in range(30)])
    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({404: 10, 429: 20}), statuses
    audited = admin.execute(
        "select outcome, count(*) from app.audit_log where actor_id = %s group by 1 order by 1",
        (user.id,)).fetchall()
    assert audited == [("not_found", 10), ("rate_limited", 1)]
    counted = admin.execute(
        "select action, outcome, sum(refused)::int from app.audit_refusals where actor_id = %s "
        "group by 1, 2", (user.id,)).fetchall()
    assert counted == [("group.join", "rate_limited", 20)]


def befriend(client: httpx.Client, a: User, b: User) -> None:
    for who, other in ((a, b), (b, a)):
        response = client.post("/rest/v1/rpc/request_friend", json={"user_id": other.id},
                               headers=who.headers)
        assert response.status_code == 200, response.text


def test_author_and_pending_member_never_both_under_concurrency(gateway, client: httpx.Client,
                                                               make_user, admin) -> None:
    outcomes: Counter[tuple[int, int]] = Counter()
    for _ in range(8):
        creator, leader, friend = make_user(), make_user(), make_user()
        befriend(client, leader, friend)
        event_id = create_event(client, creator)
        like, author = at_once(gateway, [
            (f"/events/{event_id}/like", {"memberIds": [friend.id]}, leader.headers),
            ("/rest/v1/rpc/add_event_author", {"event_id": event_id, "user_id": friend.id},
             creator.headers)])
        outcomes[(like.status_code, author.status_code)] += 1
        assert (like.status_code, author.status_code) in {(201, 409), (403, 200)}, (
            like.text, author.text)
    both = admin.execute(
        "select count(*) from app.like_group_members m join app.event_authors a "
        "on a.event_id = m.event_id and a.user_id = m.user_id where m.pending").fetchone()
    assert both == (0,), outcomes


def test_pair_token_is_bound_to_its_holder(client: httpx.Client, make_user) -> None:
    inviter, holder, thief = make_user(), make_user(), make_user()
    event_id = create_event(client, inviter)
    code = client.post(f"/api/events/{event_id}/invite", json={},
                       headers=inviter.headers).json()["short_code"]
    token = client.post("/api/invites/join", json={"code": code},
                        headers=holder.headers).json()["token"]
    for action in ("accept", "decline"):
        stolen = client.post(f"/api/invites/{token}/{action}", headers=thief.headers)
        assert stolen.status_code == 403, stolen.text
        assert stolen.json() == {"code": "42501", "details": "not_issued_to_caller", "hint": None,
                                 "message": "This token was issued to someone else."}
    accepted = client.post(f"/api/invites/{token}/accept", headers=holder.headers)
    assert accepted.status_code == 200, accepted.text
