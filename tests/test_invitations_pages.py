"""Issue 21's pages in a real Chromium: a received invitation accepted on the
event page (api.answer_pair_invite), and the authors' approval queue at
/events/{id}/groups, kept current through the realtime stream (SSE) while two
authors act in two browser contexts; axe and screenshots at phone and desktop
width, in English and Catalan; "not found" for everyone else."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import psycopg

from browser import DESKTOP, PHONE, make_event, screenshot, serious_violations, signed_in
from smtp_sink import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from conftest import GatewayProcess, User


def call(client: httpx.Client, user: User, fn: str, **args: object) -> object:
    response = client.post(f"/rest/v1/rpc/{fn}", headers=user.headers, json=args)
    assert response.status_code in (200, 204), (fn, response.text)
    return response.json() if response.status_code == 200 else None


def befriend(client: httpx.Client, a: User, b: User) -> None:
    call(client, a, "request_friend", user_id=b.id)
    call(client, b, "accept_friend", user_id=a.id)


def checked(page: Page, name: str, problems: list[str]) -> None:
    screenshot(page, name)
    found = serious_violations(page)
    assert found == [], (name, [(v["id"], v["nodes"][:3]) for v in found])
    assert problems == [], (name, problems)


def test_invitee_accepts_in_place_and_both_are_registered(
        client: httpx.Client, gateway: GatewayProcess, make_user, admin: psycopg.Connection,
        person) -> None:
    inviter, invitee = make_user("Núria Pons"), make_user("Oriol Mas")
    event_id = make_event(client, inviter, title="Americano de dissabte")
    created = call(client, inviter, "create_pair_invite", event_id=event_id,
                   invitee_email=invitee.email)
    assert isinstance(created, dict)
    guest = person()
    page = guest.open(signed_in(f"{gateway.url}/events/{event_id}", invitee))
    row = page.locator("#received li", has_text="From Núria Pons")
    row.get_by_role("button", name="Accept").wait_for()
    checked(page, "event-received", guest.problems)
    row.get_by_role("button", name="Accept").click()
    page.locator("#event-status").filter(
        has_text="Done: you and Núria Pons are registered as a pair.").wait_for()
    page.locator("#received li[data-status=accepted]").wait_for()
    assert page.locator("#received li button").count() == 0
    rows = admin.execute(
        "select r.user_id::text, r.status, r.pair_id = i.pair_id from app.registrations r "
        "join app.pair_invites i on i.id = %s where r.event_id = %s order by r.user_id",
        (created["id"], event_id)).fetchall()
    assert rows == sorted([(inviter.id, "confirmed", True), (invitee.id, "confirmed", True)])
    assert guest.problems == []


def test_someone_else_cannot_answer_from_the_page(
        client: httpx.Client, gateway: GatewayProcess, make_user, admin: psycopg.Connection,
        person) -> None:
    """An invite to another address does not show as received, and the API refuses."""
    inviter, invitee, other = make_user("Host"), make_user(), make_user()
    event_id = make_event(client, inviter)
    created = call(client, inviter, "create_pair_invite", event_id=event_id,
                   invitee_email=invitee.email)
    assert isinstance(created, dict)
    page = person().open(signed_in(f"{gateway.url}/events/{event_id}", other))
    page.locator("#received li").filter(has_text="None yet.").wait_for()
    refused = client.post("/rest/v1/rpc/answer_pair_invite", headers=other.headers,
                          json={"invite_id": created["id"], "accept": True})
    assert (refused.status_code, refused.json()["details"]) == (403, "not_addressee")
    assert admin.execute("select count(*) from app.registrations where event_id = %s",
                         (event_id,)).fetchone() == (0,)


def queue_lines(page: Page, group_id: str) -> list[str]:
    text = page.locator(f"li[data-group-id='{group_id}']").inner_text()
    return [line for line in text.splitlines() if line.strip()]


def test_two_authors_see_each_other_decide_live(
        client: httpx.Client, gateway: GatewayProcess, make_user, admin: psycopg.Connection,
        person) -> None:
    first, second = make_user("Ada Autora"), make_user("Bru Autor")
    liker, friend = make_user("Lia Soler"), make_user("Fèlix Roca")
    event_id = make_event(client, first, title="Sopar de la lliga")
    call(client, first, "add_event_author", event_id=event_id, user_id=second.id)
    befriend(client, liker, friend)
    group = call(client, liker, "like_event", event_id=event_id, member_ids=[friend.id])
    other = call(client, make_user("Ona Vila"), "like_event", event_id=event_id)
    assert isinstance(group, dict) and isinstance(other, dict)
    gid = group["id"]

    one, two = person(), person(locale="ca-ES")
    page_one = one.open(signed_in(f"{gateway.url}/events/{event_id}/groups", first))
    page_two = two.open(signed_in(f"{gateway.url}/events/{event_id}/groups", second))
    for page in (page_one, page_two):
        page.locator("#queue[data-live=live]").wait_for(timeout=15_000)
        page.evaluate("window.__sameDocument = true")
    assert queue_lines(page_one, gid)[:3] == [
        "Lia Soler's group", "Members (2): Lia Soler, Fèlix Roca", "Approvals: 0 of 2"]
    assert queue_lines(page_two, gid)[:3] == [
        "Grup de Lia Soler", "Membres (2): Lia Soler, Fèlix Roca", "Aprovacions: 0 de 2"]
    checked(page_one, "queue-en", one.problems)
    checked(page_two, "queue-ca", two.problems)

    # The first author approves: the second author's list changes without a reload.
    page_one.locator(f"li[data-group-id='{gid}']").get_by_role("button", name="Approve").click()
    page_one.locator(f"li[data-group-id='{gid}']").filter(
        has_text="You approved this group").wait_for()
    page_two.locator(f"li[data-group-id='{gid}']").filter(
        has_text="Aprovacions: 1 de 2").wait_for(timeout=10_000)

    # The second author approves: the threshold is reached; both see it approved,
    # with its chat id, the first author without a reload.
    page_two.locator(f"li[data-group-id='{gid}']").get_by_role("button", name="Aprova").click()
    page_two.locator(f"#decided li[data-group-id='{gid}']").wait_for(timeout=10_000)
    chat = admin.execute("select id::text from app.chats where like_group_id = %s",
                         (gid,)).fetchone()
    assert chat is not None
    approved_one = page_one.locator(f"#decided li[data-group-id='{gid}'][data-status=approved]")
    approved_one.wait_for(timeout=10_000)
    assert f"Approved · chat {chat[0]}" in approved_one.inner_text()
    approved_two = page_two.locator(f"#decided li[data-group-id='{gid}'][data-status=approved]")
    approved_two.wait_for(timeout=10_000)
    assert f"Aprovat · xat {chat[0]}" in approved_two.inner_text()
    assert page_one.locator(f"#pending li[data-group-id='{other['id']}']").count() == 1
    for page in (page_one, page_two):
        assert page.evaluate("window.__sameDocument") is True  # never reloaded
    checked(page_one, "queue-approved-en", one.problems)
    checked(page_two, "queue-approved-ca", two.problems)

    # The other group, rejected by the second author, leaves the first author's
    # pending list live too.
    page_two.locator(f"li[data-group-id='{other['id']}']").get_by_role(
        "button", name="Rebutja").click()
    page_one.locator(f"#decided li[data-group-id='{other['id']}'][data-status=rejected]").wait_for(
        timeout=10_000)
    assert page_one.locator("#pending").inner_text() == "No group is waiting."

    # Phone width, both languages.
    for locale, name in (("en-GB", "queue-phone-en"), ("ca-ES", "queue-phone-ca")):
        small = person(viewport=PHONE, locale=locale)
        page = small.open(signed_in(f"{gateway.url}/events/{event_id}/groups", first))
        page.locator("#queue[data-live=live]").wait_for(timeout=15_000)
        checked(page, name, small.problems)


def test_a_long_queue_shows_the_rest_after_more(
        client: httpx.Client, gateway: GatewayProcess, make_user, person) -> None:
    """53 groups, one rejected: the first page is 50 pending groups and a "More"
    button; "More" adds the last two pending and the decided one, and a live
    reload afterwards reads both pages again (nothing shown disappears)."""
    author = make_user("Queue Author")
    event_id = make_event(client, author, title="Gran torneig", capacity=200)
    groups = [call(client, make_user(f"Liker {n:02d}"), "like_event", event_id=event_id)
              for n in range(53)]
    ids = [g["id"] for g in groups if isinstance(g, dict)]
    call(client, author, "reject_like_group", group_id=ids[1])
    visitor = person()
    page = visitor.open(signed_in(f"{gateway.url}/events/{event_id}/groups", author))
    page.locator("#queue[data-live=live]").wait_for(timeout=15_000)
    more = page.get_by_role("button", name="More")
    more.wait_for()
    pending = page.locator("#pending li[data-group-id]")
    assert pending.count() == 50
    assert page.locator("#decided-section").is_hidden()
    shown = [pending.nth(n).get_attribute("data-group-id") for n in range(50)]
    assert shown == [ids[0], *ids[2:51]]  # oldest first
    # The end of the first page, with its button, at desktop and phone widths.
    for name, size in (("queue-more-button-en", DESKTOP), ("queue-more-button-phone-en", PHONE)):
        page.set_viewport_size(size)
        more.scroll_into_view_if_needed()
        screenshot(page, name, full_page=False)
        box = more.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= size["width"]
    page.set_viewport_size(DESKTOP)
    more.click()
    page.locator(f"#decided li[data-group-id='{ids[1]}'][data-status=rejected]").wait_for()
    assert pending.count() == 52
    assert pending.nth(51).get_attribute("data-group-id") == ids[52]
    assert more.is_hidden()
    checked(page, "queue-more-en", visitor.problems)
    # Another decision arrives live: the reload reads the two pages again.
    call(client, author, "approve_like_group", group_id=ids[0])
    page.locator(f"#decided li[data-group-id='{ids[0]}'][data-status=approved]").wait_for(
        timeout=10_000)
    assert pending.count() == 51
    assert page.locator("#decided li[data-group-id]").count() == 2
    assert more.is_hidden()
    assert visitor.problems == []


def test_the_queue_is_not_found_for_anyone_else(
        client: httpx.Client, gateway: GatewayProcess, make_user, person) -> None:
    author, member = make_user("Author"), make_user("Member")
    event_id = make_event(client, author)
    call(client, member, "like_event", event_id=event_id)
    texts = []
    for target, name in ((event_id, "queue-not-author"),
                         ("00000000-0000-4000-8000-00000000beef", "queue-unknown")):
        visitor = person()
        page = visitor.open(signed_in(f"{gateway.url}/events/{target}/groups", member))
        page.get_by_role("heading", name="Page not found").wait_for()
        page.get_by_text("There is no event with this id.").wait_for()
        texts.append(page.locator("main").inner_text())
        # The 404 of the API call is the only problem the console reports.
        assert visitor.problems == ["console: Failed to load resource: the server responded "
                                    "with a status of 404 (Not Found)"], visitor.problems
        checked(page, name, [])
    assert texts[0] == texts[1]
    assert page.locator("#pending-section").is_hidden()
    # And the topic is refused to the member: can_subscribe says no.
    refused = client.post("/rest/v1/rpc/can_subscribe", headers=member.headers,
                          json={"topic": f"event:{event_id}"})
    assert (refused.status_code, refused.json()) == (200, False)


def test_inviter_sends_again_twice_from_the_event_page(
        client: httpx.Client, gateway: GatewayProcess, make_user, admin: psycopg.Connection,
        person) -> None:
    inviter = make_user("Resend Host")
    event_id = make_event(client, inviter)
    email = f"again-{inviter.id[:8]}@example.com"
    created = call(client, inviter, "create_pair_invite", event_id=event_id, invitee_email=email)
    assert isinstance(created, dict)
    host = person()
    page = host.open(signed_in(f"{gateway.url}/events/{event_id}", inviter))
    row = page.locator("#sent li", has_text=f"To {email}")
    for count in (1, 2):
        row.get_by_role("button", name="Send again").click()
        wait_until(lambda n=count: admin.execute(
            "select resend_count from app.pair_invites where id = %s",
            (created["id"],)).fetchone() == (n,), timeout=10, what=f"resend {count}")
        page.locator("#event-status").filter(
            has_text=f"Invitation sent again to {email}.").wait_for()
    # After the second, the list is read again without the button.
    row.get_by_role("button", name="Send again").wait_for(state="detached")
    assert row.get_by_role("button", name="Revoke").count() == 1
    assert host.problems == []
