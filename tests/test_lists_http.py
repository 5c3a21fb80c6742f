"""The paginated lists over HTTP (docs/http.md, "Pages"): my_groups,
my_like_groups (and its seed route GET /groups), my_notifications,
my_pair_invites, an event's approval queue (event_like_groups),
list_group_invites, my_chats and list_friends. A page of `max_rows`; the next
one after `after`, the id of the last item received; a page that continues says
so in its Link header."""

from __future__ import annotations

import random
import re
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import User

LINK = re.compile(r'^<\?(?P<query>[^>]*)>; rel="next"$')


def next_query(response: httpx.Response) -> dict[str, str] | None:
    """The query of the Link header's next page, or None when there is none."""
    link = response.headers.get("link")
    if link is None:
        return None
    match = LINK.match(link)
    assert match, link
    return dict(part.split("=", 1) for part in match["query"].split("&"))


def walk(client: httpx.Client, user: User, path: str, max_rows: int, key: str = "id",
         named: tuple[str, ...] = (), **extra: str) -> list[list[Any]]:
    """Every page of a list by GET, following the Link header; the pages' items.
    The Link names the arguments of `named` (those that say which list), and the
    next page is asked for with its query alone then."""
    pages: list[list[Any]] = []
    params: dict[str, Any] = {"max_rows": max_rows, **extra}
    while True:
        response = client.get(path, params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        query = next_query(response)
        if query is None:
            return pages
        assert query == {**{name: str(extra[name]) for name in named},
                         "max_rows": str(max_rows), "after": pages[-1][-1][key]}
        params = query if named else {**query, **extra}
        assert len(pages) < 20


def create_group(client: httpx.Client, user: User, name: str) -> dict[str, Any]:
    response = client.post("/rest/v1/rpc/create_group", json={"name": name},
                           headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_my_groups_pages(client: httpx.Client, make_user) -> None:
    user = make_user()
    made = [create_group(client, user, f"Group {n}")["id"] for n in range(5)]

    pages = walk(client, user, "/rest/v1/rpc/my_groups", 2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [g["id"] for p in pages for g in p] == made[::-1]  # newest membership first
    assert {g["member_count"] for p in pages for g in p} == {1}

    # The whole list in one page: no Link header.
    whole = client.post("/rest/v1/rpc/my_groups", json={}, headers=user.headers)
    assert whole.status_code == 200, whole.text
    assert "link" not in whole.headers
    assert [g["id"] for g in whole.json()] == made[::-1]
    # A page exactly as long as the rest: the Link header, then an empty page.
    exact = client.post("/rest/v1/rpc/my_groups", json={"max_rows": 5}, headers=user.headers)
    assert "link" not in exact.headers
    four = client.post("/rest/v1/rpc/my_groups", json={"max_rows": 4}, headers=user.headers)
    assert next_query(four) == {"max_rows": "4", "after": made[1]}
    last = client.post("/rest/v1/rpc/my_groups", json={"max_rows": 4, "after": made[1]},
                       headers=user.headers)
    assert [g["id"] for g in last.json()] == [made[0]]
    assert "link" not in last.headers


def test_group_members_pages(client: httpx.Client, make_user) -> None:
    owner = make_user()
    group = create_group(client, owner, "Big")
    invite = client.post(f"/api/groups/{group['id']}/invite", json={}, headers=owner.headers)
    assert invite.status_code == 201, invite.text
    joined = [owner.id]
    for _ in range(4):
        user = make_user()
        response = client.post("/api/groups/join", json={"code": invite.json()["invite"]["code"]},
                               headers=user.headers)
        assert response.status_code == 200, response.text
        joined.append(user.id)

    pages = walk(client, owner, "/rest/v1/rpc/group_members", 2, key="user_id",
                 named=("group_id",), group_id=group["id"])
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [m["user_id"] for p in pages for m in p] == joined  # oldest first
    assert [m["role"] for p in pages for m in p] == ["owner"] + ["member"] * 4
    stranger = client.post("/rest/v1/rpc/group_members",
                           json={"group_id": group["id"], "after": make_user().id},
                           headers=owner.headers)
    assert stranger.status_code == 400, stranger.text
    assert stranger.json()["message"] == "after is not the id of an item of this list."


@pytest.mark.parametrize("max_rows", [0, -1, 201])
def test_max_rows_out_of_range_is_400(client: httpx.Client, make_user, max_rows: int) -> None:
    user = make_user()
    for function in ("my_groups", "my_like_groups", "my_notifications", "my_pair_invites",
                     "my_chats", "list_friends"):
        response = client.post(f"/rest/v1/rpc/{function}", json={"max_rows": max_rows},
                               headers=user.headers)
        assert response.status_code == 400, (function, response.text)
        assert response.json() == {"code": "22023", "message": "max_rows must be 1 to 200.",
                                   "details": None,
                                   "hint": "Ask for 1 to 200 rows; the default is 50."}


def test_unknown_cursor_is_400(client: httpx.Client, make_user) -> None:
    user, other = make_user(), make_user()
    theirs = create_group(client, other, "Not yours")["id"]
    hint = "Pass the id of the last item of the previous page, or nothing for the first page."
    for function, argument, cursor in (
            ("my_groups", "after", theirs), ("my_groups", "after", str(uuid.uuid4())),
            ("my_like_groups", "after", str(uuid.uuid4())),
            ("my_notifications", "after", str(uuid.uuid4())),
            ("my_pair_invites", "sent_after", str(uuid.uuid4())),
            ("my_pair_invites", "received_after", str(uuid.uuid4())),
            ("my_chats", "after", str(uuid.uuid4())),
            ("list_friends", "after", other.id)):
        response = client.post(f"/rest/v1/rpc/{function}", json={argument: cursor},
                               headers=user.headers)
        assert response.status_code == 400, (function, response.text)
        assert response.json() == {
            "code": "22023", "message": f"{argument} is not the id of an item of this list.",
            "details": None, "hint": hint}


def like_groups(client: httpx.Client, user: User, creator: User, count: int) -> list[str]:
    """`count` events, each liked by `user` alone: their like groups, oldest first."""
    ids = []
    for n in range(count):
        event = client.post("/rest/v1/rpc/create_event", json={"title": f"Gig {n}"},
                            headers=creator.headers)
        assert event.status_code == 200, event.text
        liked = client.post(f"/events/{event.json()['id']}/like", json={},
                            headers=user.headers)
        assert liked.status_code == 201, liked.text
        ids.append(liked.json()["id"])
    return ids


def test_my_like_groups_pages_by_rpc_and_seed_route(client: httpx.Client, make_user) -> None:
    user = make_user()
    made = like_groups(client, user, make_user(), 3)

    pages = walk(client, user, "/rest/v1/rpc/my_like_groups", 2)
    assert [[g["id"] for g in p] for p in pages] == [made[:0:-1], made[:1]]
    assert all(g["member_ids"] == [user.id] for p in pages for g in p)

    # The seed route takes the same query parameters and answers camelCase.
    first = client.get("/groups", params={"max_rows": 2}, headers=user.headers)
    assert first.status_code == 200, first.text
    assert [g["id"] for g in first.json()] == made[:0:-1]
    assert set(first.json()[0]) == {"id", "eventId", "creatorId", "status", "memberIds",
                                    "createdAt", "approvalsReceived", "approvalsNeeded",
                                    "chatId"}
    assert next_query(first) == {"max_rows": "2", "after": made[1]}
    second = client.get("/groups", params=next_query(first), headers=user.headers)
    assert [g["id"] for g in second.json()] == [made[0]]
    assert "link" not in second.headers
    # Without parameters: the default page, the whole list here.
    default = client.get("/groups", headers=user.headers)
    assert [g["id"] for g in default.json()] == made[::-1]


def test_my_notifications_pages(client: httpx.Client, make_user, admin) -> None:
    user = make_user()
    ids = [row[0] for row in admin.execute(
        "insert into app.notifications (user_id, type, data, created_at, read_at) "
        "select %s, 'digest', jsonb_build_object('n', n), now() - n * interval '1 minute', "
        "case when n %% 2 = 0 then now() end "
        "from generate_series(1, 7) n returning id::text", (user.id,)).fetchall()]
    # Two of the same instant: the id breaks the tie (descending).
    tied = [row[0] for row in admin.execute(
        "insert into app.notifications (user_id, type, data, created_at) "
        "select %s, 'digest', '{}', '2020-01-01T00:00:00Z' from generate_series(1, 2) "
        "returning id::text", (user.id,)).fetchall()]

    pages = walk(client, user, "/rest/v1/rpc/my_notifications", 3)
    assert [len(p) for p in pages] == [3, 3, 3]
    assert [n["id"] for p in pages for n in p] == ids + sorted(tied, reverse=True)

    unread = walk(client, user, "/rest/v1/rpc/my_notifications", 2, unread_only="true")
    assert [n["id"] for p in unread for n in p] == (
        [ids[0], ids[2], ids[4], ids[6], *sorted(tied, reverse=True)])


def test_my_pair_invites_pages_each_list(client: httpx.Client, make_user, admin) -> None:
    inviter, invitee, creator = make_user(), make_user(), make_user()
    sent, events = [], []
    for n in range(3):
        event = client.post("/rest/v1/rpc/create_event",
                            json={"title": f"Dance {n}", "capacity": 10},
                            headers=creator.headers)
        assert event.status_code == 200, event.text
        events.append(event.json()["id"])
        made = client.post("/rest/v1/rpc/create_pair_invite",
                           json={"event_id": events[-1]}, headers=inviter.headers)
        assert made.status_code == 200, made.text
        sent.append(made.json()["id"])
    newest = sent[::-1]
    # Sent by the event's creator to the invitee's address, an hour apart.
    alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
    received = [admin.execute(
        "insert into app.pair_invites (event_id, inviter_id, invitee_email, short_code, "
        "expires_at, created_at) values (%s, %s, lower(%s), %s, now() + interval '1 day', "
        "now() - %s * interval '1 hour') returning id::text",
        (event, creator.id, invitee.email,
         "".join(random.choice(alphabet) for _ in range(8)), n)).fetchone()[0]
        for n, event in enumerate(events)]

    first = client.post("/rest/v1/rpc/my_pair_invites", json={"max_rows": 2},
                        headers=inviter.headers)
    assert first.status_code == 200, first.text
    assert [i["id"] for i in first.json()["sent"]] == newest[:2]
    assert first.json()["received"] == []
    assert next_query(first) == {"max_rows": "2", "sent_after": newest[1]}
    second = client.post("/rest/v1/rpc/my_pair_invites",
                         json={"max_rows": 2, "sent_after": newest[1]}, headers=inviter.headers)
    assert [i["id"] for i in second.json()["sent"]] == newest[2:]
    assert "link" not in second.headers

    # The invitee receives them by address; GET takes the same parameters.
    got = client.get("/rest/v1/rpc/my_pair_invites", params={"max_rows": 1},
                     headers=invitee.headers)
    assert got.status_code == 200, got.text
    assert [i["id"] for i in got.json()["received"]] == received[:1]
    assert got.json()["sent"] == []
    assert next_query(got) == {"max_rows": "1", "received_after": received[0]}
    rest = []
    query = next_query(got)
    while query is not None:
        page = client.get("/rest/v1/rpc/my_pair_invites", params=query, headers=invitee.headers)
        assert page.status_code == 200, page.text
        rest += [i["id"] for i in page.json()["received"]]
        query = next_query(page)
    assert rest == received[1:]


def rpc(client: httpx.Client, user: User, fn: str, **args: Any) -> Any:
    response = client.post(f"/rest/v1/rpc/{fn}", json=args, headers=user.headers)
    assert response.status_code == 200, (fn, response.text)
    return response.json()


def queue_page(client: httpx.Client, author: User, **params: Any) -> httpx.Response:
    response = client.get("/rest/v1/rpc/event_like_groups", params=params,
                          headers=author.headers)
    assert response.status_code == 200, response.text
    return response


def test_event_like_groups_pages(client: httpx.Client, make_user) -> None:
    """Pending groups first, oldest first; then decided ones, last decided first;
    the Link header names the event and the cursor of the list the page ended in."""
    author = make_user("Author")
    event = rpc(client, author, "create_event", title="Queue")["id"]
    likers = [make_user(f"Liker {n}") for n in range(7)]
    g = [rpc(client, liker, "like_event", event_id=event)["id"] for liker in likers]
    rpc(client, author, "reject_like_group", group_id=g[1])
    rpc(client, author, "approve_like_group", group_id=g[3])
    rpc(client, author, "approve_like_group", group_id=g[5])

    first = queue_page(client, author, event_id=event, max_rows=3)
    assert first.json()["event"] == {"id": event, "title": "Queue"}
    assert [(x["id"], x["status"]) for x in first.json()["groups"]] == [
        (g[0], "pending"), (g[2], "pending"), (g[4], "pending")]
    assert first.json()["groups"][0]["members"] == [{"id": likers[0].id,
                                                     "display_name": "Liker 0"}]
    assert next_query(first) == {"event_id": event, "max_rows": "3", "pending_after": g[4]}
    second = queue_page(client, author, **next_query(first))  # type: ignore[arg-type]
    assert [(x["id"], x["status"]) for x in second.json()["groups"]] == [
        (g[6], "pending"), (g[5], "approved"), (g[3], "approved")]
    assert next_query(second) == {"event_id": event, "max_rows": "3", "decided_after": g[3]}
    third = queue_page(client, author, **next_query(second))  # type: ignore[arg-type]
    assert [(x["id"], x["status"]) for x in third.json()["groups"]] == [(g[1], "rejected")]
    assert "link" not in third.headers

    # The whole queue in the default page (50): no Link header.
    whole = client.post("/rest/v1/rpc/event_like_groups", json={"event_id": event},
                        headers=author.headers)
    assert "link" not in whole.headers
    assert [x["id"] for x in whole.json()["groups"]] == [g[0], g[2], g[4], g[6], g[5], g[3], g[1]]

    # Decisions between two pages: the cursor (g[4]) and a group after it (g[6])
    # are approved; the next page goes on after the cursor's place among the
    # pending groups (none left), then shows the decided ones, both included.
    rpc(client, author, "approve_like_group", group_id=g[4])
    rpc(client, author, "approve_like_group", group_id=g[6])
    again = queue_page(client, author, **next_query(first))  # type: ignore[arg-type]
    assert [(x["id"], x["status"]) for x in again.json()["groups"]] == [
        (g[6], "approved"), (g[4], "approved"), (g[5], "approved")]
    assert next_query(again) == {"event_id": event, "max_rows": "3", "decided_after": g[5]}
    rest = queue_page(client, author, **next_query(again))  # type: ignore[arg-type]
    assert [x["id"] for x in rest.json()["groups"]] == [g[3], g[1]]
    assert "link" not in rest.headers

    # Cursors that are no group of this queue's list: 400.
    other_event = rpc(client, author, "create_event", title="Other")["id"]
    elsewhere = rpc(client, make_user(), "like_event", event_id=other_event)["id"]
    hint = "Pass the id of the last item of the previous page, or nothing for the first page."
    for argument, cursor in (("pending_after", elsewhere), ("decided_after", elsewhere),
                             ("pending_after", str(uuid.uuid4())),
                             ("decided_after", g[0])):  # still pending
        refused = client.post("/rest/v1/rpc/event_like_groups",
                              json={"event_id": event, argument: cursor},
                              headers=author.headers)
        assert refused.status_code == 400, (argument, refused.text)
        assert refused.json() == {
            "code": "22023", "message": f"{argument} is not the id of an item of this list.",
            "details": None, "hint": hint}
    bad = client.post("/rest/v1/rpc/event_like_groups", json={"event_id": event, "max_rows": 0},
                      headers=author.headers)
    assert (bad.status_code, bad.json()["message"]) == (400, "max_rows must be 1 to 200.")
    # Anyone but an author: the same 404 whatever the page.
    stranger = client.post("/rest/v1/rpc/event_like_groups",
                           json={"event_id": event, "pending_after": g[0]},
                           headers=likers[0].headers)
    assert stranger.status_code == 404, stranger.text


def test_list_group_invites_pages(client: httpx.Client, make_user) -> None:
    owner, member = make_user(), make_user()
    group = create_group(client, owner, "Invites")
    invites = [rpc(client, owner, "create_group_invite", group_id=group["id"])
               for _ in range(6)]
    rpc(client, member, "join_group", code=invites[-1]["code"])
    made = [i["id"] for i in invites]
    newest = made[::-1]

    first = client.get("/rest/v1/rpc/list_group_invites",
                       params={"group_id": group["id"], "max_rows": 4}, headers=member.headers)
    assert first.status_code == 200, first.text
    assert [i["id"] for i in first.json()] == newest[:4]
    assert next_query(first) == {"group_id": group["id"], "max_rows": "4", "after": newest[3]}
    second = client.get("/rest/v1/rpc/list_group_invites", params=next_query(first),
                        headers=member.headers)
    assert [i["id"] for i in second.json()] == newest[4:]
    assert "link" not in second.headers
    assert [i["use_count"] for i in first.json() + second.json()] == [1, 0, 0, 0, 0, 0]
    # A cursor of another group's invite: 400.
    theirs = create_group(client, member, "Theirs")
    other = rpc(client, member, "create_group_invite", group_id=theirs["id"])["id"]
    refused = client.post("/rest/v1/rpc/list_group_invites",
                          json={"group_id": group["id"], "after": other}, headers=owner.headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"] == "after is not the id of an item of this list."


def test_my_chats_pages(client: httpx.Client, make_user) -> None:
    user, author = make_user(), make_user()
    chats = []
    for n in range(3):
        event = rpc(client, author, "create_event", title=f"Chat {n}")["id"]
        group = rpc(client, user, "like_event", event_id=event)["id"]
        approved = rpc(client, author, "approve_like_group", group_id=group)
        chats.append(approved["chat_id"])
    pages = walk(client, user, "/rest/v1/rpc/my_chats", 2)
    assert [[c["id"] for c in p] for p in pages] == [chats[:0:-1], chats[:1]]
    # The approving author takes part in each chat too.
    assert all(c["participant_ids"] == sorted([user.id, author.id]) for p in pages for c in p)
    assert "link" not in client.get("/rest/v1/rpc/my_chats", headers=user.headers).headers


def test_list_friends_pages(client: httpx.Client, make_user) -> None:
    user = make_user("Me")
    others = [make_user(f"Friend {n}") for n in range(5)]
    for n, other in enumerate(others):
        # Either side asks; three of the five are accepted.
        asker, answerer = (user, other) if n % 2 == 0 else (other, user)
        rpc(client, asker, "request_friend", user_id=answerer.id)
        if n < 3:
            rpc(client, answerer, "accept_friend", user_id=asker.id)
    pages = walk(client, user, "/rest/v1/rpc/list_friends", 2, key="user_id")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [f["user_id"] for p in pages for f in p] == [o.id for o in others[::-1]]
    assert [(f["status"], f["direction"]) for p in pages for f in p] == [
        ("pending", "outgoing"), ("pending", "incoming"),
        ("accepted", None), ("accepted", None), ("accepted", None)]
    assert [f["display_name"] for p in pages for f in p] == [
        "Friend 4", "Friend 3", "Friend 2", "Friend 1", "Friend 0"]
