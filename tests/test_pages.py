"""The pages behind the links, in a real Chromium against a real gateway (with
its mail worker and an SMTP sink): the whole journey from the event page's
dialog through the mail to Accept, a mail scanner that changes nothing,
decline, the one message for expired / revoked / unknown codes, the wrong
signed-in address, the inviter's own link, a full event, a group join through
/join, and an accept done with the keyboard alone."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from browser import (
    code_invite,
    make_event,
    screenshot,
    signed_in,
)
from conftest import GatewayProcess, free_port, start_gateway, stop_gateway
from smtp_sink import SmtpSink, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page


SIGN_IN_URL = "https://auth.example/sign-in"
UNAVAILABLE = ("This invitation code cannot be used: it may be mistyped, expired or revoked, "
               "or the invitation was already answered.")


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with SmtpSink.on_a_free_port() as server:
        yield server


@pytest.fixture(scope="module")
def site(database_url: str, sink: SmtpSink,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway whose APP_URL is itself, so the mail's links lead to its pages."""
    port = free_port()
    proc = start_gateway(
        database_url, tmp_path_factory.mktemp("pages") / "gateway.log", port=port,
        APP_URL=f"http://127.0.0.1:{port}", SMTP_URL=f"smtp://127.0.0.1:{sink.port}",
        MAIL_POLL_SECONDS="0.5", SIGN_IN_URL=SIGN_IN_URL)
    yield proc
    stop_gateway(proc)


@pytest.fixture
def api(site: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=30) as http:
        yield http


def state(admin: psycopg.Connection, invite_id: str, users: list[str]) -> dict[str, Any]:
    """What a click could change: registrations of the event, the invite's status,
    its tokens, the people's rate-limit counts and audit entries."""
    row = admin.execute(
        "select i.status, i.event_id, "
        " (select count(*) from app.registrations r where r.event_id = i.event_id), "
        " (select count(*) from app.pair_invite_tokens t where t.invite_id = i.id) "
        "from app.pair_invites i where i.id = %s", (invite_id,)).fetchone()
    assert row is not None
    hits = admin.execute(
        "select bucket, sum(hits) from app.rate_limit_counters where user_id = any(%s::uuid[]) "
        "group by bucket order by bucket", (users,)).fetchall()
    audit = admin.execute(
        "select action, outcome, status from app.audit_log "
        "where actor_id = any(%s::uuid[]) or subject_id = %s order by id",
        (users, invite_id)).fetchall()
    return {"status": row[0], "registrations": row[2], "tokens": row[3],
            "hits": dict(hits), "audit": audit}


def invite_text(page: Page) -> str:
    return page.locator("#invite").inner_text()


def wait_for_text(page: Page, selector: str, text: str) -> None:
    page.locator(selector).filter(has_text=text).first.wait_for(timeout=15_000)


def test_whole_journey_by_email(api: httpx.Client, site: GatewayProcess, sink: SmtpSink,
                                make_user, admin, person) -> None:
    inviter, invitee = make_user("Marta Puig"), make_user("Joan Serra")
    event_id = make_event(api, inviter, title="Torneig de tardor")

    # The inviter uses the event page's dialog to invite by email.
    host = person()
    page = host.open(signed_in(f"{site.url}/events/{event_id}", inviter))
    page.get_by_role("button", name="Register with a partner").click()
    page.get_by_label("Partner's email").fill(invitee.email)
    page.get_by_role("button", name="Send the invitation").click()
    wait_for_text(page, "#dialog-result", f"Invitation sent to {invitee.email}.")
    code = page.locator("#share-code").inner_text()
    assert re.fullmatch(r"[2-9A-HJKMNP-Z]{8}", code)
    assert page.url == f"{site.url}/events/{event_id}"  # the token left the address bar
    screenshot(page, "event-dialog")
    page.get_by_role("button", name="Close").click()
    wait_for_text(page, "#sent li", "waiting for an answer")
    assert f"To {invitee.email}" in page.locator("#sent").inner_text()
    screenshot(page, "event")

    # The mail arrives; its link is opened by the invitee, signed in.
    mail = wait_until(lambda: sink.to(invitee.email), timeout=20, what="the invitation mail")
    link = re.search(r'href="([^"]+/invite/accept\?code=[^"]+)"', mail[0].part("html"))
    assert link is not None
    url = link.group(1)
    assert url == f"{site.url}/invite/accept?code={code}"

    guest = person()
    page = guest.open(signed_in(url, invitee))
    wait_for_text(page, "#invite h2", "Marta Puig invites you to register for Torneig de tardor")
    assert "Invited by\nMarta Puig" in invite_text(page)
    screenshot(page, "accept-preview")
    page.get_by_role("button", name="Accept").click()
    wait_for_text(page, "#invite", "you and Marta Puig are registered for Torneig de tardor")
    assert page.locator("#registrations li").all_inner_texts() == [
        "Marta Puig: confirmed", "You: confirmed"]
    screenshot(page, "accept-done")

    rows = admin.execute(
        "select user_id::text, status, pair_id from app.registrations where event_id = %s "
        "order by user_id = %s desc", (event_id, inviter.id)).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(inviter.id, "confirmed"), (invitee.id, "confirmed")]
    assert rows[0][2] is not None and rows[0][2] == rows[1][2]
    status = admin.execute("select status from app.pair_invites where short_code = %s",
                           (code,)).fetchone()
    assert status == ("accepted",)
    assert host.problems == [] and guest.problems == []


def test_scanner_changes_nothing(api: httpx.Client, site: GatewayProcess, make_user, admin,
                                 person) -> None:
    inviter, invitee = make_user("Scanner Host"), make_user()
    event_id = make_event(api, inviter)
    invite = code_invite(api, inviter, event_id)
    url = f"{site.url}/invite/accept?code={invite['short_code']}"
    people = [inviter.id, invitee.id]
    before = state(admin, invite["id"], people)
    everyone = admin.execute("select count(*) from app.audit_log").fetchone()

    # No session: JavaScript runs for a few seconds; nothing at all is recorded.
    scanner = person()
    page = scanner.open(url)
    page.wait_for_timeout(3000)
    assert "Sign in to see this and answer it." in invite_text(page)
    assert page.get_by_role("button", name="Accept").count() == 0
    href = page.locator("#invite a").get_attribute("href") or ""
    assert re.fullmatch(re.escape(f"{SIGN_IN_URL}?redirect_to={quote(url, safe='')}&state=")
                        + "[0-9a-f]{32}", href), href
    screenshot(page, "accept-signed-out")
    assert state(admin, invite["id"], people) == before
    assert admin.execute("select count(*) from app.audit_log").fetchone() == everyone

    # A session but no click: only what a preview records (one join_code hit, one
    # audit entry pair_invite.preview/shown); no token, no answer, no registration.
    page = person().open(signed_in(url, invitee))
    wait_for_text(page, "#invite h2", "Scanner Host invites you")
    page.wait_for_timeout(3000)
    after = state(admin, invite["id"], people)
    assert after == {**before, "hits": {**before["hits"], "join_code": 1},
                     "audit": [*before["audit"], ("pair_invite.preview", "shown", 200)]}
    assert after["status"] == "sent" and after["tokens"] == 0 and after["registrations"] == 0


def test_decline(api: httpx.Client, site: GatewayProcess, make_user, admin, person) -> None:
    inviter, invitee = make_user("Decline Host"), make_user()
    event_id = make_event(api, inviter)
    invite = code_invite(api, inviter, event_id)
    # Signed in as supabase-js keeps a session: a JSON object in localStorage.
    guest = person()
    page = guest.open(f"{site.url}/")
    page.evaluate("([key, session]) => localStorage.setItem(key, JSON.stringify(session))", [
        "sb-abcdefghijklmnop-auth-token",
        {"access_token": invitee.token, "token_type": "bearer", "expires_in": 3600,
         "refresh_token": "r", "user": {"id": invitee.id, "email": invitee.email}}])
    page = guest.open(f"{site.url}/invite/accept?code={invite['short_code'].lower()}")
    page.get_by_role("button", name="Decline").click()
    wait_for_text(page, "#invite", "You declined the invitation. Nobody was registered.")
    assert admin.execute("select status, invitee_id::text from app.pair_invites where id = %s",
                         (invite["id"],)).fetchone() == ("declined", invitee.id)
    assert admin.execute("select count(*) from app.registrations where event_id = %s",
                         (event_id,)).fetchone() == (0,)


def test_expired_revoked_and_unknown_codes_get_one_message(
        api: httpx.Client, site: GatewayProcess, make_user, admin, person) -> None:
    invitee = make_user()
    expired_host, revoked_host = make_user(), make_user()
    expired = code_invite(api, expired_host, make_event(api, expired_host))
    admin.execute("update app.pair_invites set expires_at = now() - interval '1 minute' "
                  "where id = %s", (expired["id"],))
    revoked = code_invite(api, revoked_host, make_event(api, revoked_host))
    response = api.post("/rest/v1/rpc/revoke_pair_invite", headers=revoked_host.headers,
                        json={"invite_id": revoked["id"]})
    assert response.status_code == 200, response.text
    guest = person()
    texts = []
    for name, code in (("expired", expired["short_code"]), ("revoked", revoked["short_code"]),
                       ("unknown", "ZZZZ-2222")):
        page = guest.open(signed_in(f"{site.url}/invite/accept?code={code}", invitee))
        page.locator("#invite .message").wait_for()
        texts.append(invite_text(page))
        assert page.get_by_role("button", name="Accept").count() == 0
        if name == "unknown":
            screenshot(page, "accept-unavailable")
    assert texts == [UNAVAILABLE] * 3


def test_wrong_signed_in_email(api: httpx.Client, site: GatewayProcess, make_user, admin,
                               person) -> None:
    inviter, addressee, other = make_user("Wrong Host"), make_user(), make_user()
    event_id = make_event(api, inviter)
    invite = code_invite(api, inviter, event_id, email=addressee.email)
    page = person().open(signed_in(
        f"{site.url}/invite/accept?code={invite['short_code']}", other))
    page.get_by_role("button", name="Accept").click()
    wait_for_text(page, "#invite", "sent to another email address")
    assert page.locator("#invite .message").inner_text() == (
        f"This invitation was sent to another email address than {other.email}. "
        "Sign in with the address it was sent to.")
    assert page.get_by_role("button", name="Sign out and use another account").count() == 1
    screenshot(page, "accept-wrong-email")
    assert admin.execute("select status from app.pair_invites where id = %s",
                         (invite["id"],)).fetchone() == ("sent",)
    assert admin.execute("select count(*) from app.registrations where event_id = %s",
                         (event_id,)).fetchone() == (0,)


def test_inviter_opens_own_link_and_full_event(api: httpx.Client, site: GatewayProcess,
                                               make_user, admin, person) -> None:
    inviter, invitee = make_user("Own Host"), make_user()
    event_id = make_event(api, inviter, capacity=4)
    invite = code_invite(api, inviter, event_id)
    url = f"{site.url}/invite/accept?code={invite['short_code']}"
    page = person().open(signed_in(url, inviter))
    wait_for_text(page, "#invite", "This is your own invitation.")
    assert page.get_by_role("button", name="Accept").count() == 0

    page = person().open(signed_in(url, invitee))
    accept = page.get_by_role("button", name="Accept")
    accept.wait_for()
    admin.execute("update app.events set seats_taken = 3 where id = %s", (event_id,))
    accept.click()
    wait_for_text(page, "#invite", "The event does not have two free seats any more.")
    assert admin.execute("select status from app.pair_invites where id = %s",
                         (invite["id"],)).fetchone() == ("sent",)

    # The deadline passes while the invitation is still open.
    admin.execute("update app.events set seats_taken = 0, registration_deadline = now() "
                  "- interval '1 minute' where id = %s", (event_id,))
    page = person().open(signed_in(url, invitee))
    page.get_by_role("button", name="Accept").click()
    wait_for_text(page, "#invite", "The registration deadline for this event has passed.")
    assert admin.execute("select count(*) from app.registrations where event_id = %s",
                         (event_id,)).fetchone() == (0,)


def test_group_join(api: httpx.Client, site: GatewayProcess, make_user, admin, person) -> None:
    owner, joiner = make_user("Group Owner"), make_user()
    group = api.post("/rest/v1/rpc/create_group", headers=owner.headers,
                     json={"name": "Dimecres a la pista"}).json()
    code = api.post("/rest/v1/rpc/create_group_invite", headers=owner.headers,
                    json={"group_id": group["id"], "max_uses": 3}).json()["code"]
    page = person().open(signed_in(f"{site.url}/join?code={code}", joiner))
    wait_for_text(page, "#group h2", "Dimecres a la pista")
    text = page.locator("#group").inner_text()
    assert "Members\n1" in text and "Uses left\n3" in text
    screenshot(page, "join-preview")
    page.get_by_role("button", name="Join the group").click()
    wait_for_text(page, "#group", "Done: you are a member of Dimecres a la pista.")
    screenshot(page, "join-done")
    assert admin.execute("select role from app.group_members where group_id = %s and user_id = %s",
                         (group["id"], joiner.id)).fetchone() == ("member",)

    # The same code again, now used up by others: the page says so.
    admin.execute("update app.group_invites set use_count = max_uses where group_id = %s",
                  (group["id"],))
    page = person().open(signed_in(f"{site.url}/join?code={code}", make_user()))
    wait_for_text(page, "#group", "This invite code has been used as many times as it allows.")
    page = person().open(signed_in(f"{site.url}/join?code={uuid.uuid4()}", make_user()))
    wait_for_text(page, "#group", "There is no group invite with this code.")


def test_keyboard_only_accept(api: httpx.Client, site: GatewayProcess, make_user, admin,
                              person) -> None:
    inviter, invitee = make_user("Keys Host"), make_user()
    event_id = make_event(api, inviter)
    invite = code_invite(api, inviter, event_id)
    page = person().open(signed_in(
        f"{site.url}/invite/accept?code={invite['short_code']}", invitee))
    page.get_by_role("button", name="Accept").wait_for()
    focused = []
    for _ in range(12):
        page.keyboard.press("Tab")
        focused.append(page.evaluate(
            "document.activeElement.id || document.activeElement.textContent"))
        if focused[-1] == "accept":
            break
    assert focused[-1] == "accept", focused
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    screenshot(page, "accept-keyboard-focus", full_page=False)
    page.keyboard.press("Enter")
    wait_for_text(page, "#invite", "you and Keys Host are registered")
    assert admin.execute("select count(*) from app.registrations where event_id = %s",
                         (event_id,)).fetchone() == (2,)


def test_catalan_from_the_browser_language(api: httpx.Client, site: GatewayProcess,
                                           make_user, person) -> None:
    inviter, invitee = make_user("Host Català"), make_user()
    invite = code_invite(api, inviter, make_event(api, inviter, title="Lliga"))
    page = person(locale="ca-ES").open(signed_in(
        f"{site.url}/invite/accept?code={invite['short_code']}", invitee))
    wait_for_text(page, "#invite h2", "Host Català et convida a inscriure't a Lliga en parella.")
    assert page.get_by_role("button", name="Accepta").count() == 1
    assert page.locator("html").get_attribute("lang") == "ca"
    screenshot(page, "accept-preview-ca")


def test_code_typed_by_hand(api: httpx.Client, site: GatewayProcess, make_user, person) -> None:
    inviter, invitee = make_user("Typed Host"), make_user()
    invite = code_invite(api, inviter, make_event(api, inviter))
    page = person().open(signed_in(f"{site.url}/", invitee))
    code = invite["short_code"]
    typed = f" {code[:4].lower()} - {code[4:].lower()} "
    page.get_by_role("textbox", name="Invitation code").fill(typed)
    page.get_by_role("button", name="Show the invitation").click()
    wait_for_text(page, "#invite h2", "Typed Host invites you")


def test_stop_invitations_from_the_mail(api: httpx.Client, site: GatewayProcess, sink: SmtpSink,
                                        make_user, admin, person) -> None:
    inviter, invitee = make_user("Stop Host"), make_user()
    code_invite(api, inviter, make_event(api, inviter), email=invitee.email)
    mail = wait_until(lambda: sink.to(invitee.email), timeout=20, what="the invitation mail")
    link = re.search(r'href="([^"]+/invite/stop\?token=[^"]+)"', mail[0].part("html"))
    assert link is not None
    url = link.group(1).replace("&amp;", "&")
    assert url.startswith(f"{site.url}/invite/stop?token=")

    def stopped() -> bool:
        return admin.execute("select count(*) from app.mail_stops where email = %s",
                             (invitee.email,)).fetchone() == (1,)

    # Opened (no session, JavaScript running a while): nothing stops.
    reader = person()
    page = reader.open(url)
    button = page.get_by_role("button", name="Stop invitations to this address")
    button.wait_for()
    page.wait_for_timeout(2000)
    assert not stopped()
    button.click()
    wait_for_text(page, "#stop-result", "Done: no more invitation mail will be sent")
    assert stopped()
    assert button.count() == 0 or not button.is_visible()
    screenshot(page, "stop-done")

    page = reader.open(f"{site.url}/invite/stop?token=not-a-real-token")
    page.get_by_role("button", name="Stop invitations to this address").click()
    wait_for_text(page, "#stop-result", "This link is not valid. Check that it was copied whole.")


def test_event_page_code_copy_revoke_and_received(api: httpx.Client, site: GatewayProcess,
                                                  make_user, admin, person) -> None:
    inviter, partner = make_user("Copy Host"), make_user("Rita Soler")
    event_id = make_event(api, inviter, title="Lliga de dijous")
    host = person()
    host.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    page = host.open(signed_in(f"{site.url}/events/{event_id}", inviter))
    page.get_by_role("button", name="Register with a partner").click()
    page.get_by_role("button", name="Make a code to share").click()
    code_box = page.locator("#share-code")
    code_box.filter(has_text=re.compile(r"^[2-9A-HJKMNP-Z]{8}$")).wait_for()
    code = code_box.inner_text()
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == (
        f"{site.url}/invite/accept?code={code}")
    page.keyboard.press("Escape")  # the dialog closes with the keyboard
    assert not page.locator("#pair-dialog").is_visible()
    row = page.locator("#sent li", has_text=f"Code {code}")
    row.get_by_role("button", name="Revoke").click()
    wait_for_text(page, "#sent li", "revoked")
    assert page.locator("#event-status").inner_text() == "Invitation revoked."
    assert admin.execute("select status from app.pair_invites where short_code = %s",
                         (code,)).fetchone() == ("revoked",)

    # An invitation by email shows on the partner's page of the event as received.
    code_invite(api, inviter, event_id, email=partner.email)
    page = person().open(signed_in(f"{site.url}/events/{event_id}", partner))
    wait_for_text(page, "#received li", "From Copy Host")
    assert "waiting for an answer" in page.locator("#received").inner_text()
    assert page.locator("#sent").inner_text() == "None yet."
