"""Like groups over HTTP (seed 003), against a real gateway: the seed's camelCase routes,
their statuses, and the rows and side effects behind them (chat, participants,
notifications)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest

if TYPE_CHECKING:
    from conftest import User

GROUP_KEYS = {"id", "eventId", "creatorId", "status", "memberIds", "createdAt",
              "approvalsReceived", "approvalsNeeded", "chatId"}
APPROVAL_KEYS = {"id", "groupId", "authorId", "approved", "createdAt"}
ERROR_KEYS = {"code", "message", "details", "hint"}


# --- helpers ------------------------------------------------------------------


def befriend(client: httpx.Client, a: User, b: User) -> None:
    """a asks b, b accepts: they are friends."""
    response = client.post("/rest/v1/rpc/request_friend", json={"user_id": b.id},
                           headers=a.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": b.id, "status": "pending"}
    response = client.post("/rest/v1/rpc/accept_friend", json={"user_id": a.id},
                           headers=b.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": a.id, "status": "accepted"}


def create_event(client: httpx.Client, creator: User, title: str = "Rooftop gig") -> dict[str, Any]:
    response = client.post("/rest/v1/rpc/create_event", json={"title": title},
                           headers=creator.headers)
    assert response.status_code == 200, response.text
    event = response.json()
    assert event["creator_id"] == creator.id
    assert event["author_ids"] == [creator.id]
    return event


def add_author(client: httpx.Client, creator: User, event_id: str, user: User) -> None:
    response = client.post("/rest/v1/rpc/add_event_author",
                           json={"event_id": event_id, "user_id": user.id}, headers=creator.headers)
    assert response.status_code == 200, response.text
    assert user.id in response.json()["author_ids"]


def like(client: httpx.Client, user: User, event_id: str,
         member_ids: list[str] | None = None) -> httpx.Response:
    body = {} if member_ids is None else {"memberIds": member_ids}
    return client.post(f"/events/{event_id}/like", json=body, headers=user.headers)


def like_ok(client: httpx.Client, user: User, event_id: str,
            members: Sequence[User] = ()) -> dict[str, Any]:
    response = like(client, user, event_id, [m.id for m in members])
    assert response.status_code == 201, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["code"] == code, body
    return body


def notifications(client: httpx.Client, user: User, kind: str) -> list[dict[str, Any]]:
    response = client.get("/rest/v1/rpc/my_notifications", headers=user.headers)
    assert response.status_code == 200, response.text
    return [n for n in response.json() if n["type"] == kind]


def chats(client: httpx.Client, user: User) -> list[dict[str, Any]]:
    response = client.get("/rest/v1/rpc/my_chats", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


def member_rows(admin: psycopg.Connection, group_id: str) -> set[str]:
    rows = admin.execute("select user_id::text from app.like_group_members where group_id = %s",
                         (group_id,)).fetchall()
    return {r[0] for r in rows}


@dataclass
class Scene:
    """An event (host + extra authors) and a would-be group creator with friends."""

    event_id: str
    host: User
    authors: list[User]  # host first
    creator: User
    friends: list[User]


def scene(client: httpx.Client, make_user: Callable[[], User], authors: int = 1,
          friends: int = 0) -> Scene:
    host = make_user()
    event = create_event(client, host)
    extra = [make_user() for _ in range(authors - 1)]
    for author in extra:
        add_author(client, host, event["id"], author)
    creator = make_user()
    pals = [make_user() for _ in range(friends)]
    for pal in pals:
        befriend(client, creator, pal)
    return Scene(event["id"], host, [host, *extra], creator, pals)


def approve(client: httpx.Client, author: User, group_id: str) -> httpx.Response:
    return client.post(f"/groups/{group_id}/approve", headers=author.headers)


# --- liking an event ----------------------------------------------------------


def test_like_creates_a_pending_group_in_camel_case(client: httpx.Client, make_user,
                                                    admin) -> None:
    s = scene(client, make_user, authors=1, friends=2)
    response = like(client, s.creator, s.event_id, [s.friends[1].id, s.friends[0].id])

    assert response.status_code == 201, response.text
    group = response.json()
    assert set(group) == GROUP_KEYS
    uuid.UUID(group["id"])
    assert group["eventId"] == s.event_id
    assert group["creatorId"] == s.creator.id
    assert group["status"] == "pending"
    assert group["memberIds"][0] == s.creator.id
    assert sorted(group["memberIds"]) == sorted([s.creator.id, *(f.id for f in s.friends)])
    assert len(group["memberIds"]) == 3
    assert group["approvalsReceived"] == 0
    assert group["approvalsNeeded"] == 1  # min(1 author, 3 members)
    assert group["chatId"] is None
    assert datetime.fromisoformat(group["createdAt"]).tzinfo is not None

    row = admin.execute("select event_id::text, creator_id::text, status from app.like_groups "
                        "where id = %s", (group["id"],)).fetchone()
    assert row == (s.event_id, s.creator.id, "pending")
    assert member_rows(admin, group["id"]) == set(group["memberIds"])


def test_like_without_members_and_refusals(client: httpx.Client, make_user) -> None:
    s = scene(client, make_user, authors=2, friends=10)
    stranger = make_user()

    # An author (the creator, or one added later) cannot like their own event.
    assert_error(like(client, s.host, s.event_id), 403, "42501")
    assert_error(like(client, s.authors[1], s.event_id), 403, "42501")
    # Members must be friends and not authors; at most 10 people; the event must exist.
    assert_error(like(client, s.creator, s.event_id, [stranger.id]), 403, "42501")
    befriend(client, s.creator, s.authors[1])
    assert_error(like(client, s.creator, s.event_id, [s.authors[1].id]), 403, "42501")
    assert_error(like(client, s.creator, s.event_id, [f.id for f in s.friends]), 409, "PT409")
    assert_error(like(client, s.creator, str(uuid.uuid4())), 404, "PT404")
    assert_error(like(client, s.creator, "not-a-uuid"), 400, "22P02")

    # No body at all: a group of the creator alone.
    response = client.post(f"/events/{s.event_id}/like", headers=s.creator.headers)
    assert response.status_code == 201, response.text
    group = response.json()
    assert group["memberIds"] == [s.creator.id]
    assert group["approvalsNeeded"] == 1  # min(2 authors, 1 member)
    # ... and the creator is now in a pending group of this event.
    assert_error(like(client, s.creator, s.event_id), 409, "PT409")


# --- reading ------------------------------------------------------------------


def test_list_my_groups(client: httpx.Client, make_user) -> None:
    s = scene(client, make_user, friends=1)
    other = scene(client, make_user)
    first = like_ok(client, s.creator, s.event_id, s.friends)
    second = like_ok(client, s.creator, other.event_id)

    for user, expected in ((s.creator, [second, first]), (s.friends[0], [first])):
        response = client.get("/groups", headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.json() == expected  # newest first, same shape as creation
    # The event's host is no member: the list is for creators and members only.
    response = client.get("/groups", headers=s.host.headers)
    assert response.status_code == 200
    assert response.json() == []


def test_get_group_visibility(client: httpx.Client, make_user) -> None:
    s = scene(client, make_user, authors=2, friends=1)
    group = like_ok(client, s.creator, s.event_id, s.friends)
    stranger = make_user()

    for viewer in (s.creator, s.friends[0], s.host, s.authors[1]):
        response = client.get(f"/groups/{group['id']}", headers=viewer.headers)
        assert response.status_code == 200, response.text
        assert response.json() == group
    assert_error(client.get(f"/groups/{group['id']}", headers=stranger.headers), 403, "42501")
    assert_error(client.get(f"/groups/{uuid.uuid4()}", headers=stranger.headers), 404, "PT404")
    assert_error(client.get("/groups/not-a-uuid", headers=stranger.headers), 400, "22P02")

    # A removed author no longer sees it.
    response = client.post("/rest/v1/rpc/remove_event_author",
                           json={"event_id": s.event_id, "user_id": s.authors[1].id},
                           headers=s.host.headers)
    assert response.status_code == 200, response.text
    assert_error(client.get(f"/groups/{group['id']}", headers=s.authors[1].headers), 403, "42501")


# --- members ------------------------------------------------------------------


def test_add_member_rules(client: httpx.Client, make_user, admin) -> None:
    s = scene(client, make_user, friends=10)
    group = like_ok(client, s.creator, s.event_id, s.friends[:8])  # 9 people
    stranger = make_user()

    # A friend, by the creator: 200 with the new member listed.
    response = client.post(f"/groups/{group['id']}/members", json={"userId": s.friends[8].id},
                           headers=s.creator.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == GROUP_KEYS
    assert body["memberIds"][0] == s.creator.id
    assert body["memberIds"][-1] == s.friends[8].id
    assert len(body["memberIds"]) == 10

    # Adding someone already in the group changes nothing.
    response = client.post(f"/groups/{group['id']}/members", json={"userId": s.friends[0].id},
                           headers=s.creator.headers)
    assert response.status_code == 200, response.text
    assert response.json()["memberIds"] == body["memberIds"]

    # Not the creator: 403. Not a friend of the creator: 403. The 11th person: 409.
    assert_error(client.post(f"/groups/{group['id']}/members", json={"userId": s.friends[9].id},
                             headers=s.friends[0].headers), 403, "42501")
    assert_error(client.post(f"/groups/{group['id']}/members", json={"userId": stranger.id},
                             headers=s.creator.headers), 403, "42501")
    assert_error(client.post(f"/groups/{group['id']}/members", json={"userId": s.friends[9].id},
                             headers=s.creator.headers), 409, "PT409")
    assert_error(client.post(f"/groups/{uuid.uuid4()}/members", json={"userId": s.friends[9].id},
                             headers=s.creator.headers), 404, "PT404")
    assert len(member_rows(admin, group["id"])) == 10


def test_add_member_already_in_another_pending_group(client: httpx.Client, make_user,
                                                     admin) -> None:
    s = scene(client, make_user, friends=1)
    target = s.friends[0]
    rival = make_user()
    befriend(client, rival, target)
    theirs = like_ok(client, rival, s.event_id, [target])
    mine = like_ok(client, s.creator, s.event_id)

    assert_error(client.post(f"/groups/{mine['id']}/members", json={"userId": target.id},
                             headers=s.creator.headers), 409, "PT409")
    assert member_rows(admin, mine["id"]) == {s.creator.id}

    # Once the other group is decided, the target is free again.
    response = client.post(f"/groups/{theirs['id']}/reject", headers=s.host.headers)
    assert response.status_code == 200, response.text
    response = client.post(f"/groups/{mine['id']}/members", json={"userId": target.id},
                           headers=s.creator.headers)
    assert response.status_code == 200, response.text
    assert response.json()["memberIds"] == [s.creator.id, target.id]

    # A decided group cannot change: 400.
    response = client.post(f"/groups/{theirs['id']}/members", json={"userId": target.id},
                           headers=rival.headers)
    assert_error(response, 400, "PT400")


def test_remove_member(client: httpx.Client, make_user, admin) -> None:
    s = scene(client, make_user, friends=3)
    a, b, c = s.friends
    group = like_ok(client, s.creator, s.event_id, s.friends)
    gid = group["id"]

    # A member cannot remove someone else; the creator cannot leave.
    assert_error(client.delete(f"/groups/{gid}/members/{b.id}", headers=a.headers), 403, "42501")
    assert_error(client.delete(f"/groups/{gid}/members/{s.creator.id}",
                               headers=s.creator.headers), 400, "PT400")

    response = client.delete(f"/groups/{gid}/members/{a.id}", headers=s.creator.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == GROUP_KEYS
    assert body["status"] == "pending"
    assert body["memberIds"][0] == s.creator.id  # the others, added together, in any order
    assert sorted(body["memberIds"][1:]) == sorted([b.id, c.id])

    response = client.delete(f"/groups/{gid}/members/{b.id}", headers=b.headers)  # leaves
    assert response.status_code == 200, response.text
    assert response.json()["memberIds"] == [s.creator.id, c.id]

    assert_error(client.delete(f"/groups/{gid}/members/{a.id}", headers=s.creator.headers),
                 404, "PT404")
    assert member_rows(admin, gid) == {s.creator.id, c.id}
    # The one who left may like the event again.
    assert like(client, a, s.event_id).status_code == 201


def test_removal_lowers_the_threshold_and_approves(client: httpx.Client, make_user,
                                                  admin) -> None:
    s = scene(client, make_user, authors=3, friends=2)
    group = like_ok(client, s.creator, s.event_id, s.friends)  # 3 members, 3 authors
    gid = group["id"]
    assert group["approvalsNeeded"] == 3
    for author in s.authors[:2]:
        response = approve(client, author, gid)
        assert response.status_code == 200, response.text
        assert response.json() == {"id": gid, "status": "pending", "chatId": None}

    response = client.delete(f"/groups/{gid}/members/{s.friends[1].id}",
                             headers=s.creator.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "approved"
    assert body["approvalsReceived"] == 2
    assert body["approvalsNeeded"] == 2
    assert body["chatId"] is not None

    participants = admin.execute(
        "select user_id::text from app.chat_participants where chat_id = %s",
        (body["chatId"],)).fetchall()
    expected = {s.creator.id, s.friends[0].id, *(a.id for a in s.authors)}
    assert {p[0] for p in participants} == expected
    for member in (s.creator, s.friends[0]):
        assert [n["data"]["chat_id"] for n in notifications(client, member, "group_approved")] \
            == [body["chatId"]]
    assert notifications(client, s.friends[1], "group_approved") == []


# --- approvals ----------------------------------------------------------------


def test_approve_until_approved(client: httpx.Client, make_user, admin) -> None:
    s = scene(client, make_user, authors=3, friends=3)
    group = like_ok(client, s.creator, s.event_id, s.friends)  # 4 members: threshold 3
    gid = group["id"]
    members = [s.creator, *s.friends]
    stranger = make_user()

    response = client.get(f"/groups/{gid}/approvals", headers=s.creator.headers)
    assert response.status_code == 200, response.text
    assert response.json() == []

    # Members and strangers are not authors.
    assert_error(approve(client, s.creator, gid), 403, "42501")
    assert_error(approve(client, stranger, gid), 403, "42501")
    assert_error(approve(client, s.host, str(uuid.uuid4())), 404, "PT404")

    first = approve(client, s.host, gid)
    assert first.status_code == 200, first.text
    assert first.json() == {"id": gid, "status": "pending", "chatId": None}
    again = approve(client, s.host, gid)  # a second approval changes nothing
    assert again.status_code == 200, again.text
    assert again.json() == {"id": gid, "status": "pending", "chatId": None}

    response = client.get(f"/groups/{gid}/approvals", headers=s.friends[0].headers)
    assert response.status_code == 200, response.text
    approvals = response.json()
    assert len(approvals) == 1
    assert set(approvals[0]) == APPROVAL_KEYS
    assert approvals[0]["groupId"] == gid
    assert approvals[0]["authorId"] == s.host.id
    assert approvals[0]["approved"] is True
    datetime.fromisoformat(approvals[0]["createdAt"])
    assert_error(client.get(f"/groups/{gid}/approvals", headers=stranger.headers), 403, "42501")

    response = approve(client, s.authors[1], gid)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": gid, "status": "pending", "chatId": None}
    response = client.get(f"/groups/{gid}", headers=s.creator.headers)
    assert (response.json()["approvalsReceived"], response.json()["approvalsNeeded"]) == (2, 3)
    assert notifications(client, s.creator, "group_approved") == []

    response = approve(client, s.authors[2], gid)
    assert response.status_code == 200, response.text
    decided = response.json()
    assert set(decided) == {"id", "status", "chatId"}
    assert decided["id"] == gid
    assert decided["status"] == "approved"
    chat_id = decided["chatId"]
    uuid.UUID(chat_id)

    # Decided: approving or rejecting again is 400.
    assert_error(approve(client, s.host, gid), 400, "PT400")
    assert_error(client.post(f"/groups/{gid}/reject", headers=s.authors[1].headers), 400, "PT400")

    response = client.get(f"/groups/{gid}", headers=s.friends[2].headers)
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["chatId"] == chat_id
    assert len(client.get(f"/groups/{gid}/approvals", headers=s.host.headers).json()) == 3

    # One chat, members and authors in it, one notification per member.
    assert admin.execute("select id::text, type from app.chats where like_group_id = %s",
                         (gid,)).fetchall() == [(chat_id, "approved_group")]
    everyone = sorted({*(m.id for m in members), *(a.id for a in s.authors)})
    rows = admin.execute("select user_id::text from app.chat_participants where chat_id = %s "
                         "order by user_id", (chat_id,)).fetchall()
    assert [r[0] for r in rows] == everyone
    for user in (*members, *s.authors):
        listed = [c for c in chats(client, user) if c["id"] == chat_id]
        assert len(listed) == 1, user
        assert listed[0]["type"] == "approved_group"
        assert listed[0]["like_group_id"] == gid
        assert listed[0]["participant_ids"] == everyone
    assert chats(client, stranger) == []
    for member in members:
        approved = notifications(client, member, "group_approved")
        assert len(approved) == 1, member
        assert approved[0]["data"] == {"group_id": gid, "event_id": s.event_id,
                                       "chat_id": chat_id}
        assert approved[0]["read_at"] is None
    for author in s.authors:
        assert notifications(client, author, "group_approved") == []


def test_reject(client: httpx.Client, make_user, admin) -> None:
    s = scene(client, make_user, authors=2, friends=2)
    group = like_ok(client, s.creator, s.event_id, s.friends)
    gid = group["id"]
    members = [s.creator, *s.friends]

    assert_error(client.post(f"/groups/{gid}/reject", headers=s.friends[0].headers), 403, "42501")
    response = approve(client, s.host, gid)
    assert response.json() == {"id": gid, "status": "pending", "chatId": None}

    response = client.post(f"/groups/{gid}/reject", headers=s.authors[1].headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": gid, "status": "rejected"}

    assert_error(approve(client, s.host, gid), 400, "PT400")
    assert admin.execute("select count(*) from app.chats where like_group_id = %s",
                         (gid,)).fetchone() == (0,)
    for member in members:
        rejected = notifications(client, member, "group_rejected")
        assert [n["data"] for n in rejected] == [{"group_id": gid, "event_id": s.event_id}]
        assert notifications(client, member, "group_approved") == []
        assert chats(client, member) == []
    response = client.get(f"/groups/{gid}", headers=s.creator.headers)
    assert response.json()["status"] == "rejected"
    approvals = client.get(f"/groups/{gid}/approvals", headers=s.host.headers).json()
    assert sorted((a["authorId"], a["approved"]) for a in approvals) == sorted(
        [(s.host.id, True), (s.authors[1].id, False)])


# --- anonymous callers --------------------------------------------------------


SEED_CALLS = [
    ("GET", "/groups", None),
    ("GET", "/groups/{gid}", None),
    ("POST", "/groups/{gid}/members", {"userId": "{uid}"}),
    ("DELETE", "/groups/{gid}/members/{uid}", None),
    ("GET", "/groups/{gid}/approvals", None),
    ("POST", "/groups/{gid}/approve", None),
    ("POST", "/groups/{gid}/reject", None),
    ("POST", "/events/{eid}/like", {"memberIds": []}),
]


@pytest.fixture(scope="module")
def anon_target(gateway, database_url: str) -> dict[str, str]:
    from conftest import create_user

    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        s = scene(http, lambda: create_user(database_url), friends=1)
        group = like_ok(http, s.creator, s.event_id, s.friends)
    return {"gid": group["id"], "uid": s.friends[0].id, "eid": s.event_id}


@pytest.mark.parametrize(("method", "path", "body"), SEED_CALLS,
                         ids=[f"{m} {p}" for m, p, _ in SEED_CALLS])
def test_anon_gets_401(client: httpx.Client, anon_target: dict[str, str], admin, method: str,
                       path: str, body: dict[str, Any] | None) -> None:
    url = path.format(**anon_target)
    if body is not None:
        body = {k: (v.format(**anon_target) if isinstance(v, str) else v) for k, v in body.items()}
    response = client.request(method, url, json=body)
    assert_error(response, 401, "42501")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Nothing changed.
    assert admin.execute("select status from app.like_groups where id = %s",
                         (anon_target["gid"],)).fetchone() == ("pending",)
    assert len(member_rows(admin, anon_target["gid"])) == 2
