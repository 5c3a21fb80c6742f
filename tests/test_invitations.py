"""Invitations beyond the first message (issue 21), over HTTP and SMTP: resends
counted per invite and per recipient under concurrency, one reminder however
many workers run, mail in the reader's language (all three cases of the
choice), the RFC 8058 headers and the one-click stop, update_profile(locale)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
from test_mail import APP_URL, create_event, outbox, start_mailer, stop_process
from test_pairs_concurrency import at_once

from conftest import free_port, start_gateway, stop_gateway
from smtp_sink import Received, SmtpSink, wait_until

if TYPE_CHECKING:
    from conftest import User

REMINDER_EN = "Reminder: your invitation to register as a pair"
INVITE_EN = "You are invited to register as a pair"
INVITE_CA = "Et conviden a inscriure't en parella"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink(free_port()) as server:
        yield server


def address() -> str:
    return f"inv-{uuid.uuid4().hex[:12]}@example.com"


def invite(client: httpx.Client, inviter: User, event_id: str, email: str,
           language: str | None = None) -> dict[str, Any]:
    headers = {**inviter.headers, **({"Accept-Language": language} if language else {})}
    response = client.post("/rest/v1/rpc/create_pair_invite", headers=headers,
                           json={"event_id": event_id, "invitee_email": email})
    assert response.status_code == 200, response.text
    return response.json()


# ---- resend ----------------------------------------------------------------


def test_resend_twice_per_invite_however_many_race(gateway, client: httpx.Client, make_user,
                                                   admin: psycopg.Connection) -> None:
    inviter = make_user()
    email = address()
    created = invite(client, inviter, create_event(client, inviter), email)
    answers = at_once(gateway, [("/rest/v1/rpc/resend_pair_invite", {"invite_id": created["id"]},
                                 inviter.headers)] * 6)
    statuses = Counter(r.status_code for r in answers)
    assert statuses == Counter({200: 2, 409: 4}), [r.text for r in answers]
    assert sorted(r.json()["resends"] for r in answers if r.status_code == 200) == [1, 2]
    for refused in (r for r in answers if r.status_code == 409):
        assert refused.json() == {"code": "PT409", "details": "resend_limit", "hint": None,
                                  "message": "An invitation can be sent again at most twice."}
    assert [(r["template"], r["data"]["short_code"]) for r in outbox(admin, email)] == \
        [("pair_invite", created["short_code"])] * 3
    assert admin.execute("select resend_count from app.pair_invites where id = %s",
                         (created["id"],)).fetchone() == (2,)


def test_resends_race_for_the_recipients_mail_limit(gateway, client: httpx.Client, make_user,
                                                    admin: psycopg.Connection) -> None:
    """invite_mail allows 3 invitation messages a day per address: two invites
    queued two; four resends at once, all answered 200, queue one more."""
    email = address()
    invites = []
    for _ in range(2):
        inviter = make_user()
        invites.append((inviter, invite(client, inviter, create_event(client, inviter), email)))
    answers = at_once(gateway, [
        ("/rest/v1/rpc/resend_pair_invite", {"invite_id": created["id"]}, inviter.headers)
        for inviter, created in invites for _ in range(2)])
    assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
    assert len(outbox(admin, email)) == 3


def test_resend_refusals_over_http(client: httpx.Client, make_user) -> None:
    inviter, other = make_user(), make_user()
    event_id = create_event(client, inviter)
    code_only = client.post("/rest/v1/rpc/create_pair_invite", headers=inviter.headers,
                            json={"event_id": event_id}).json()
    answer = client.post("/rest/v1/rpc/resend_pair_invite", headers=inviter.headers,
                         json={"invite_id": code_only["id"]})
    assert (answer.status_code, answer.json()["details"]) == (400, "no_email")
    emailed = invite(client, inviter, event_id, address())
    answer = client.post("/rest/v1/rpc/resend_pair_invite", headers=other.headers,
                         json={"invite_id": emailed["id"]})
    assert (answer.status_code, answer.json()["details"]) == (403, "not_inviter")
    answer = client.post("/rest/v1/rpc/resend_pair_invite", json={"invite_id": emailed["id"]})
    assert answer.status_code == 401


# ---- reminders ---------------------------------------------------------------


def make_due(admin: psycopg.Connection, invite_id: str) -> None:
    """Made six days ago, expiring in twelve hours: a reminder is due."""
    admin.execute("update app.pair_invites set created_at = now() - interval '6 days', "
                  "expires_at = now() + interval '12 hours' where id = %s", (invite_id,))


def test_concurrent_reminder_passes_remind_each_invite_once(
        client: httpx.Client, make_user, admin: psycopg.Connection,
        database_url: str) -> None:
    emails = [address() for _ in range(12)]
    for email in emails:
        inviter = make_user()
        make_due(admin, invite(client, inviter, create_event(client, inviter), email)["id"])
    barrier = threading.Barrier(4)

    def passes() -> int:
        handled = 0
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait(timeout=30)
            for _ in range(5):
                with conn.transaction():
                    # As the mail worker does (SET LOCAL ROLE would reach Citus's workers).
                    conn.execute("select set_config('role', 'service_role', true)")
                    row = conn.execute("select private.queue_due_reminders(86400, 3)").fetchone()
                    handled += row[0] if row else 0
        return handled

    with ThreadPoolExecutor(max_workers=4) as pool:
        handled = list(pool.map(lambda _: passes(), range(4)))
    reminders = Counter(
        to for (to,) in admin.execute(
            "select to_email from app.mail_outbox where template = 'pair_invite_reminder' "
            "and to_email = any(%s)", (emails,)).fetchall())
    assert reminders == Counter({email: 1 for email in emails})
    assert sum(handled) >= 12  # other tests' due invites may be handled too


def test_two_mailers_send_one_reminder(database_url: str, client: httpx.Client, make_user,
                                       admin: psycopg.Connection, sink: SmtpSink,
                                       tmp_path: Path) -> None:
    emails = [address() for _ in range(4)]
    stopped = address()
    created = {}
    # The stopped address asked for no mail before its invite: it gets none at all.
    admin.execute("insert into app.mail_stops (email) values (%s)", (stopped,))
    for email in [*emails, stopped]:
        inviter = make_user()
        created[email] = invite(client, inviter, create_event(client, inviter), email)
        make_due(admin, created[email]["id"])
    mailers = [start_mailer(database_url, sink.port, tmp_path / f"mailer-{i}.log")
               for i in range(2)]
    try:
        def reminded() -> bool:
            return all(any(str(r.message["Subject"]) == REMINDER_EN for r in sink.to(e))
                       for e in emails)

        wait_until(reminded, timeout=30, interval=0.2, what="a reminder to every address")
        time.sleep(2)  # a second reminder, if any, would arrive here
    finally:
        for mailer in mailers:
            stop_process(mailer)
    for email in emails:
        subjects = Counter(str(r.message["Subject"]) for r in sink.to(email))
        assert subjects == Counter({INVITE_EN: 1, REMINDER_EN: 1}), (email, subjects)
        reminder = next(r for r in sink.to(email) if str(r.message["Subject"]) == REMINDER_EN)
        assert created[email]["short_code"] in reminder.part("plain")
        assert reminder.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sink.to(stopped) == []
    rows = admin.execute(
        "select invitee_email, reminded_at is not null from app.pair_invites "
        "where invitee_email = any(%s) order by invitee_email", ([*emails, stopped],)).fetchall()
    assert rows == sorted((e, True) for e in [*emails, stopped])


def test_my_pair_invites_shows_expiry_and_reminder(client: httpx.Client, make_user,
                                                   admin: psycopg.Connection) -> None:
    inviter = make_user()
    created = invite(client, inviter, create_event(client, inviter), address())
    sent = client.post("/rest/v1/rpc/my_pair_invites", headers=inviter.headers).json()["sent"]
    assert (sent[0]["expires_at"], sent[0]["reminded_at"], sent[0]["resends"]) == \
        (created["expires_at"], None, 0)
    admin.execute("update app.pair_invites set reminded_at = '2026-01-02T03:04:05Z' where id = %s",
                  (created["id"],))
    sent = client.post("/rest/v1/rpc/my_pair_invites", headers=inviter.headers).json()["sent"]
    assert sent[0]["reminded_at"] == "2026-01-02T03:04:05+00:00"


# ---- languages ---------------------------------------------------------------


def test_update_profile_locale_over_http(client: httpx.Client, make_user) -> None:
    user = make_user("Before")
    renamed = client.post("/rest/v1/rpc/update_profile", headers=user.headers,
                          json={"display_name": "After"})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["display_name"], renamed.json()["locale"]) == ("After", None)
    catalan = client.post("/rest/v1/rpc/update_profile", headers=user.headers,
                          json={"locale": "ca"})
    assert catalan.status_code == 200, catalan.text
    me = client.post("/rest/v1/rpc/me", headers=user.headers).json()
    assert (me["display_name"], me["locale"]) == ("After", "ca")
    wrong = client.post("/rest/v1/rpc/update_profile", headers=user.headers,
                        json={"locale": "fr"})
    assert (wrong.status_code, wrong.json()["message"]) == (400, "locale must be 'en' or 'ca'.")


def only(messages: list[Received]) -> Received:
    assert len(messages) == 1, [str(m.message["Subject"]) for m in messages]
    return messages[0]


def test_mail_language_follows_the_reader_then_the_inviter_then_english(
        database_url: str, tmp_path: Path, sink: SmtpSink, make_user,
        admin: psycopg.Connection) -> None:
    gateway = start_gateway(database_url, tmp_path / "gateway.log",
                            SMTP_URL=f"smtp://127.0.0.1:{sink.port}", APP_URL=APP_URL,
                            MAIL_POLL_SECONDS="0.3")
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            # 1. The address belongs to an account that chose Catalan; the inviter's
            #    browser asks for English: Catalan.
            reader = make_user()
            assert client.post("/rest/v1/rpc/update_profile", headers=reader.headers,
                               json={"locale": "ca"}).status_code == 200
            inviter = make_user()
            one = invite(client, inviter, create_event(client, inviter), reader.email, "en-GB,en")
            # 2. No account; the inviter's Accept-Language prefers Catalan: Catalan.
            nobody_ca = address()
            inviter = make_user()
            two = invite(client, inviter, create_event(client, inviter), nobody_ca,
                         "fr-FR,ca;q=0.9,en;q=0.8")
            # 3. No account, no language from the inviter: English.
            nobody_en = address()
            inviter = make_user()
            three = invite(client, inviter, create_event(client, inviter), nobody_en)
            wait_until(lambda: all(sink.to(a) for a in (reader.email, nobody_ca, nobody_en)),
                       timeout=20, what="three invitations")
        log = gateway.log()
    finally:
        stop_gateway(gateway)

    for email, created, lang, subject in ((reader.email, one, "ca", INVITE_CA),
                                          (nobody_ca, two, "ca", INVITE_CA),
                                          (nobody_en, three, "en", INVITE_EN)):
        received = only(sink.to(email))
        message = received.message
        assert (str(message["Subject"]), message["Content-Language"]) == (subject, lang), email
        text, html = received.part("plain"), received.part("html")
        code = created["short_code"]
        link = f"{APP_URL}/invite/accept?code={code}" + ("&lang=ca" if lang == "ca" else "")
        assert link in text and link.replace("&", "&amp;") in html
        stop = message["List-Unsubscribe"]
        assert stop.startswith(f"<{APP_URL}/invite/stop?token=") and stop.endswith(">")
        assert stop[1:-1] in text
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        if lang == "ca":
            assert f"El teu codi: {code}" in text
            assert "Mira qui et convida i accepta o rebutja la invitació" in text
            assert "No rebre més invitacions en aquesta adreça" in html
        else:
            assert f"Your code: {code}" in text
            assert "Get no more invitations at this address" in html
    assert "Traceback" not in log


# ---- the one-click stop (RFC 8058) -------------------------------------------


def test_one_click_post_stops_the_address_without_sign_in(
        database_url: str, tmp_path: Path, sink: SmtpSink, make_user,
        admin: psycopg.Connection) -> None:
    gateway = start_gateway(database_url, tmp_path / "gateway.log",
                            SMTP_URL=f"smtp://127.0.0.1:{sink.port}", APP_URL=APP_URL,
                            MAIL_POLL_SECONDS="0.3")
    try:
        email = address()
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            inviter = make_user()
            invite(client, inviter, create_event(client, inviter), email)
            received = wait_until(lambda: sink.to(email), timeout=20, what="the invitation")[0]
            target = str(received.message["List-Unsubscribe"])[1:-1]
            path = target.removeprefix(APP_URL)
            assert path.startswith("/invite/stop?token=")

            def stops() -> list[tuple[str]]:
                return admin.execute("select email from app.mail_stops where email = %s",
                                     (email,)).fetchall()

            # Opening the link changes nothing; a POST without the one-click body
            # neither; an unknown token is 404.
            assert client.get(path).status_code == 200
            bare = client.post(path)
            assert bare.status_code == 400
            unknown = client.post("/invite/stop?token=nope",
                                  data={"List-Unsubscribe": "One-Click"})
            assert (unknown.status_code, unknown.text) == (404, "This link is not valid.")
            assert stops() == []
            # The mail client's POST: form-encoded, no cookie, no Authorization.
            done = client.post(path, data={"List-Unsubscribe": "One-Click"})
            assert (done.status_code, done.text) == (
                200, "Done: no more invitation mail will be sent to this address.")
            assert stops() == [(email,)]
            again = client.post(path, content=b"List-Unsubscribe=One-Click",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert again.status_code == 200
            # Stopped: a new invitation to the address queues nothing.
            inviter = make_user()
            invite(client, inviter, create_event(client, inviter), email)
            assert len(outbox(admin, email)) == 1
    finally:
        stop_gateway(gateway)
