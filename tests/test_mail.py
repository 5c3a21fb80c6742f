"""The mail outbox end to end: a real SMTP server (aiosmtpd), the gateway's own
mail worker and standalone `python -m gateway mailer` workers. Messages are
queued with the invite, retried while SMTP is down, delivered once by several
workers, and never sent for an invite that was rolled back."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest

from conftest import ROOT, free_port, start_gateway, stop_gateway
from gateway.mail.worker import Mailer
from gateway.settings import authenticator_url
from smtp_sink import SmtpSink, wait_until

if TYPE_CHECKING:
    from conftest import User

APP_URL = "https://app.example"


def create_event(client: httpx.Client, user: User, title: str = "Mail cup") -> str:
    deadline = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    response = client.post("/rest/v1/rpc/create_event", headers=user.headers, json={
        "title": title, "registration_deadline": deadline, "capacity": 20})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def email_invite(client: httpx.Client, inviter: User, event_id: str, email: str
                 ) -> dict[str, Any]:
    response = client.post(f"/api/events/{event_id}/invite", json={"email": email},
                           headers=inviter.headers)
    assert response.status_code == 201, response.text
    return response.json()


def outbox(admin: psycopg.Connection, email: str) -> list[dict[str, Any]]:
    cur = admin.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute(
        "select id::text, to_email, template, data, attempts, last_error, sent_at "
        "from app.mail_outbox where to_email = %s order by created_at", (email.lower(),)
    ).fetchall()


def message_ids(sink: SmtpSink, addresses: set[str]) -> Counter[str]:
    return Counter(
        str(r.message["Message-ID"]) for r in sink.received
        if {a.lower() for a in r.rcpt_tos} & addresses)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink.on_a_free_port() as server:
        yield server


def test_gateway_worker_delivers_an_emailed_invite(database_url: str, tmp_path: Path,
                                                   sink: SmtpSink, make_user, admin) -> None:
    gateway = start_gateway(database_url, tmp_path / "gateway.log",
                            SMTP_URL=f"smtp://127.0.0.1:{sink.port}", APP_URL=APP_URL,
                            MAIL_POLL_SECONDS="0.5", MAIL_FROM="Joinery <invites@app.example>")
    try:
        inviter, invitee = make_user("Marta Host"), make_user()
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            event_id = create_event(client, inviter, title="Autumn pairs")
            created = email_invite(client, inviter, event_id, invitee.email)
            code = created["short_code"]

            arrived = wait_until(lambda: sink.to(invitee.email), timeout=15,
                                 what="the invite's message")
            # Let the row's commit land, then read it.
            row = wait_until(lambda: [r for r in outbox(admin, invitee.email) if r["sent_at"]],
                             timeout=10, what="sent_at on the outbox row")
            joined = client.post("/api/invites/join", json={"code": code},
                                 headers=invitee.headers)
            assert joined.status_code == 200, joined.text
            token = joined.json()["token"]

            # The stop link, followed without an account, stops further invitations.
            stops = re.findall(rf"{re.escape(APP_URL)}/invite/stop\?token=([A-Za-z0-9_-]+)",
                               arrived[0].part("plain"))
            assert len(stops) == 1
            stop_token = stops[0]
            unknown = client.post("/rest/v1/rpc/stop_invitations", json={"token": "nope"})
            assert unknown.status_code == 404, unknown.text
            assert unknown.json()["message"] == "This link is not valid."
            stopped = client.post("/rest/v1/rpc/stop_invitations", json={"token": stop_token})
            assert stopped.status_code == 200, stopped.text
            assert stopped.json() == {"stopped": True}
            again = email_invite(client, make_user(), create_event(client, inviter), invitee.email)
            assert set(again) == set(created)
            control = f"control-{uuid.uuid4().hex[:12]}@example.com"
            email_invite(client, make_user(), create_event(client, inviter), control)
            wait_until(lambda: sink.to(control), timeout=15, what="the control message")
            assert len(sink.to(invitee.email)) == 1
            assert len(outbox(admin, invitee.email)) == 1
        log = gateway.log()
    finally:
        stop_gateway(gateway)

    assert len(arrived) == 1
    received = arrived[0]
    assert received.rcpt_tos == (invitee.email,)
    message = received.message
    assert message["To"] == invitee.email
    assert message["From"] == "Joinery <invites@app.example>"
    # No user-written text in the mail: a fixed subject, no name, no title.
    assert message["Subject"] == "You are invited to register as a pair"
    assert "Marta Host" not in received.content.decode() and "Autumn pairs" not in (
        received.content.decode())
    assert message.is_multipart()
    link = f"{APP_URL}/invite/accept?code={code}"
    stop = f"{APP_URL}/invite/stop?token={stop_token}"
    text, html = received.part("plain"), received.part("html")
    for body in (text, html):
        assert code in body
        assert link in body
        assert stop in body
    assert f'href="{link}"' in html
    assert f'href="{stop}"' in html
    # The stop token is kept only as a hash.
    stored = admin.execute(
        "select email from app.mail_stop_tokens where token_hash = sha256(convert_to(%s, 'UTF8'))",
        (stop_token,)).fetchall()
    assert stored == [(invitee.email.lower(),)]
    text, html = text.replace(stop, ""), html.replace(stop, "")

    raw = received.content.decode("utf-8", "replace")
    assert token not in raw
    assert token not in text and token not in html
    assert "token" not in (text + html).lower()
    # Nothing token-like (long base64url runs) anywhere in the message.
    assert re.findall(r"[A-Za-z0-9_-]{40,}", text + html) == []

    assert len(row) == 1
    assert row[0]["attempts"] == 1
    assert row[0]["last_error"] is None
    assert row[0]["template"] == "pair_invite"
    assert set(row[0]["data"]) == {"short_code", "expires_at", "invite_id", "locale"}
    assert row[0]["data"]["locale"] == "en"
    assert message["Content-Language"] == "en"
    assert message["List-Unsubscribe"] == f"<{stop}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] == f"<{row[0]['id']}@joinery>"
    assert code not in log and token not in log and stop_token not in log


def start_mailer(database_url: str, port: int, log_path: Path) -> subprocess.Popen:
    environment = {
        **os.environ,
        "GATEWAY_DATABASE_URL": authenticator_url(database_url),
        "SMTP_URL": f"smtp://127.0.0.1:{port}",
        "APP_URL": APP_URL,
        "MAIL_POLL_SECONDS": "0.3",
        "MAIL_RETRY_MAX": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "mailer"], cwd=ROOT, env=environment,
        stdout=log_path.open("w"), stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_two_mailers_retry_while_down_then_deliver_once(
        database_url: str, gateway, client: httpx.Client, tmp_path: Path, make_user,
        admin) -> None:
    port = free_port()  # nothing listens here until the sink starts
    mailers = [start_mailer(database_url, port, tmp_path / f"mailer-{i}.log") for i in range(2)]
    server: SmtpSink | None = None
    try:
        addresses = [f"pair-{uuid.uuid4().hex[:12]}@example.com" for _ in range(3)]
        for address in addresses:
            inviter = make_user()
            email_invite(client, inviter, create_event(client, inviter), address)

        def all_retried() -> bool:
            for address in addresses:
                rows = outbox(admin, address)
                if len(rows) != 1:
                    return False
                row = rows[0]
                if row["attempts"] < 2 or not row["last_error"] or row["sent_at"] is not None:
                    return False
            return True

        wait_until(all_retried, timeout=20, interval=0.2,
                   what="two failed attempts on every message while SMTP is down")
        for index, mailer in enumerate(mailers):
            assert mailer.poll() is None, (tmp_path / f"mailer-{index}.log").read_text()
        before = {a: outbox(admin, a)[0] for a in addresses}
        for row in before.values():
            assert "Connection" in row["last_error"] or "Errno" in row["last_error"], row

        server = SmtpSink(port).start()
        wanted = set(addresses)
        wait_until(lambda: len(message_ids(server, wanted)) == 3, timeout=20, interval=0.1,
                   what="the three messages once SMTP is up")
        time.sleep(2)  # late duplicates would show up here

        counts = message_ids(server, wanted)
        expected = {f"<{row['id']}@joinery>" for row in before.values()}
        assert set(counts) == expected
        assert counts == Counter({mid: 1 for mid in expected}), counts
        for address in addresses:
            delivered = server.to(address)
            assert len(delivered) == 1, address
            assert delivered[0].rcpt_tos == (address,)
            code = before[address]["data"]["short_code"]
            assert f"{APP_URL}/invite/accept?code={code}" in delivered[0].part("plain")

        def all_sent() -> dict[str, dict[str, Any]] | None:
            rows = {a: outbox(admin, a)[0] for a in addresses}
            return rows if all(r["sent_at"] is not None for r in rows.values()) else None

        after = wait_until(all_sent, timeout=10, what="sent_at on every outbox row")
        for address, row in after.items():
            assert row["sent_at"] is not None
            assert row["last_error"] is None
            assert row["attempts"] >= before[address]["attempts"] + 1
    finally:
        for mailer in mailers:
            stop_process(mailer)
        if server is not None:
            server.stop()
    for mailer in mailers:
        assert mailer.returncode is not None
    logs = "".join((tmp_path / f"mailer-{i}.log").read_text() for i in range(2))
    assert "failed: ConnectionRefusedError" in logs
    for row in before.values():
        assert row["data"]["short_code"] not in logs


def test_rolled_back_invite_queues_nothing(client: httpx.Client, make_user, admin) -> None:
    inviter = make_user()
    event_id = create_event(client, inviter)
    address = f"rolled-back-{uuid.uuid4().hex[:12]}@example.com"
    kept = f"kept-{uuid.uuid4().hex[:12]}@example.com"
    claims = json.dumps({"sub": inviter.id, "role": "authenticated", "email": inviter.email})

    def create_as_inviter(email: str) -> dict[str, Any]:
        admin.execute("set local role authenticated")
        admin.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        row = admin.execute("select api.create_pair_invite(%s, %s)", (event_id, email)).fetchone()
        admin.execute("reset role")
        assert row is not None
        result = row[0]
        assert set(result) == {"id", "short_code", "expires_at"}, result
        return result

    with admin.transaction() as tx:
        rolled_back = create_as_inviter(address)
        # Inside the transaction the message is queued...
        inside = admin.execute("select count(*) from app.mail_outbox where to_email = %s",
                               (address,)).fetchone()
        assert inside == (1,)
        raise psycopg.Rollback(tx)

    assert outbox(admin, address) == []
    gone = admin.execute("select count(*) from app.pair_invites where id = %s",
                         (rolled_back["id"],)).fetchone()
    assert gone == (0,)

    # ...and the same call committed leaves exactly one message.
    with admin.transaction():
        create_as_inviter(kept)
    rows = outbox(admin, kept)
    assert len(rows) == 1
    assert rows[0]["sent_at"] is None or rows[0]["attempts"] >= 1
    assert outbox(admin, address) == []


def _drain(mailer: Mailer, conninfo: str, application_name: str) -> int:
    """Runs one worker's send_one until nothing is due (in its own event loop, so it
    can run in a thread); the number of messages it handled."""

    async def run() -> int:
        handled = 0
        async with await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, application_name=application_name) as conn:
            while await mailer.send_one(conn):
                handled += 1
        return handled

    return asyncio.run(run())


def test_a_message_is_leased_not_locked_while_it_is_sent(
        database_url: str, client: httpx.Client, sink: SmtpSink, make_user, admin) -> None:
    conninfo = authenticator_url(database_url)
    smtp_url = f"smtp://127.0.0.1:{sink.port}"
    address = f"lease-{uuid.uuid4().hex[:12]}@example.com"
    inviter = make_user()
    email_invite(client, inviter, create_event(client, inviter), address)
    [queued] = outbox(admin, address)
    sink.hold_for = {address}

    first = Mailer(conninfo, smtp_url, "invites@app.example", APP_URL)
    name = f"lease-a-{uuid.uuid4().hex[:8]}"
    worker = threading.Thread(target=_drain, args=(first, conninfo, name), daemon=True)
    worker.start()
    try:
        assert sink.held.wait(timeout=20), "the worker never reached the SMTP server"
        # The SMTP server has not answered yet: the worker holds no transaction.
        activity = admin.execute(
            "select state, xact_start, backend_xid from pg_stat_activity "
            "where application_name = %s", (name,)).fetchall()
        assert activity == [("idle", None, None)], activity
        leased = admin.execute(
            "select locked_until > now(), sent_at from app.mail_outbox where id = %s",
            (queued["id"],)).fetchone()
        assert leased == (True, None)

        # A second worker takes whatever else is due, never the leased message.
        second = Mailer(conninfo, smtp_url, "invites@app.example", APP_URL)
        _drain(second, conninfo, f"lease-b-{uuid.uuid4().hex[:8]}")
        [row] = outbox(admin, address)
        assert row["attempts"] == 0 and row["sent_at"] is None, row
        assert sink.to(address) == []
    finally:
        sink.release.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(sink.to(address)) == 1
    sent = admin.execute("select sent_at is not null, locked_until, attempts "
                         "from app.mail_outbox where id = %s", (queued["id"],)).fetchone()
    assert sent == (True, None, 1)


def test_an_expired_lease_is_taken_again(database_url: str, client: httpx.Client,
                                         sink: SmtpSink, make_user, admin) -> None:
    conninfo = authenticator_url(database_url)
    mailer = Mailer(conninfo, f"smtp://127.0.0.1:{sink.port}", "invites@app.example", APP_URL)
    address = f"expired-{uuid.uuid4().hex[:12]}@example.com"
    inviter = make_user()
    email_invite(client, inviter, create_event(client, inviter), address)
    [queued] = outbox(admin, address)

    # A worker leased it and died: while the lease runs, nobody sends it.
    admin.execute("update app.mail_outbox set locked_until = now() + interval '1 hour' "
                  "where id = %s", (queued["id"],))
    _drain(mailer, conninfo, "lease-live")
    assert sink.to(address) == []
    assert outbox(admin, address)[0]["sent_at"] is None

    # The lease has run out: the message is sent (at least once), and marked.
    admin.execute("update app.mail_outbox set locked_until = now() - interval '1 second' "
                  "where id = %s", (queued["id"],))
    _drain(mailer, conninfo, "lease-expired")
    assert len(sink.to(address)) == 1
    [row] = outbox(admin, address)
    assert row["sent_at"] is not None and row["attempts"] == 1
