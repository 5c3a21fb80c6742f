"""The paginated lists over HTTP (docs/http.md, "Pages"): my_groups,
my_like_groups (and its seed route GET /groups), my_notifications and
my_pair_invites. A page of `max_rows`; the next one after `after`, the id of the
last item received; a page that continues says so in its Link header."""

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
         **extra: str) -> list[list[Any]]:
    """Every page of a list by GET, following the Link header; the pages' items."""
    pages: list[list[Any]] = []
    params: dict[str, Any] = {"max_rows": max_rows, **extra}
    while True:
        response = client.get(path, params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        query = next_query(response)
        if query is None:
            return pages
        assert query == {"max_rows": str(max_rows), "after": pages[-1][-1][key]}
        params = {**query, **extra}
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
                 group_id=group["id"])
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
    for function in ("my_groups", "my_like_groups", "my_notifications", "my_pair_invites"):
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
            ("my_pair_invites", "received_after", str(uuid.uuid4()))):
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
