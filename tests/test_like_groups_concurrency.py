"""Like groups under concurrency, over HTTP: requests released together by a barrier,
each from its own thread and connection, against a real gateway and database."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import psycopg

if TYPE_CHECKING:
    from conftest import GatewayProcess, User

Request = tuple[str, dict[str, Any] | None, dict[str, str]]


def at_once(gateway: GatewayProcess, requests: list[Request]) -> list[httpx.Response]:
    """POSTs every (path, body, headers) from its own thread and client, all released
    by one barrier once every client has connected."""
    barrier = threading.Barrier(len(requests))

    def send(item: Request) -> httpx.Response:
        path, body, headers = item
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            assert http.get("/healthz").status_code == 200  # connection open before the race
            barrier.wait(timeout=30)
            return http.post(path, json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(send, requests))


def befriend(client: httpx.Client, a: User, b: User) -> None:
    response = client.post("/rest/v1/rpc/request_friend", json={"user_id": b.id},
                           headers=a.headers)
    assert response.status_code == 200, response.text
    response = client.post("/rest/v1/rpc/accept_friend", json={"user_id": a.id},
                           headers=b.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"


def create_event(client: httpx.Client, creator: User) -> str:
    response = client.post("/rest/v1/rpc/create_event", json={"title": "Race night"},
                           headers=creator.headers)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def add_author(client: httpx.Client, creator: User, event_id: str, user: User) -> None:
    response = client.post("/rest/v1/rpc/add_event_author",
                           json={"event_id": event_id, "user_id": user.id}, headers=creator.headers)
    assert response.status_code == 200, response.text


def like(client: httpx.Client, user: User, event_id: str, members: list[User]) -> dict[str, Any]:
    response = client.post(f"/events/{event_id}/like", json={"memberIds": [m.id for m in members]},
                           headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_two_authors_approve_at_once(gateway, client: httpx.Client, make_user: Callable[[], User],
                                     admin: psycopg.Connection) -> None:
    """Threshold min(2 authors, 3 members) = 2, both authors approve together: one
    approval, one chat, one notification per member, every time."""
    host, second = make_user(), make_user()
    event_id = create_event(client, host)
    add_author(client, host, event_id, second)
    authors = {host.id, second.id}

    groups: list[tuple[str, set[str]]] = []
    for _ in range(5):
        creator, a, b = make_user(), make_user(), make_user()
        befriend(client, creator, a)
        befriend(client, creator, b)
        group = like(client, creator, event_id, [a, b])
        assert group["approvalsNeeded"] == 2
        groups.append((group["id"], {creator.id, a.id, b.id}))

    for gid, members in groups:
        responses = at_once(gateway, [(f"/groups/{gid}/approve", None, author.headers)
                                      for author in (host, second)])
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        bodies = [r.json() for r in responses]
        assert all(set(b) == {"id", "status", "chatId"} and b["id"] == gid for b in bodies)

        chats = admin.execute("select id::text, type from app.chats where like_group_id = %s",
                              (gid,)).fetchall()
        assert len(chats) == 1, chats
        chat_id, chat_type = chats[0]
        assert chat_type == "approved_group"
        # Whoever decided saw 'approved' with the chat; an earlier one saw 'pending' and no chat.
        answered = Counter(b["status"] for b in bodies)
        assert answered in (Counter(approved=1, pending=1), Counter(approved=2)), bodies
        for body in bodies:
            expected_chat = chat_id if body["status"] == "approved" else None
            assert body["chatId"] == expected_chat, bodies

        status = admin.execute("select status from app.like_groups where id = %s",
                               (gid,)).fetchone()
        assert status == ("approved",)
        approvals = admin.execute(
            "select author_id::text, approved from app.like_group_approvals where group_id = %s",
            (gid,)).fetchall()
        assert sorted(approvals) == sorted((a, True) for a in authors)
        participants = admin.execute(
            "select user_id::text from app.chat_participants where chat_id = %s",
            (chat_id,)).fetchall()
        assert sorted(p[0] for p in participants) == sorted(members | authors)
        notified = admin.execute(
            "select user_id::text, count(*) from app.notifications "
            "where type = 'group_approved' and data->>'group_id' = %s group by user_id",
            (gid,)).fetchall()
        assert sorted(notified) == sorted((m, 1) for m in members)


def test_twenty_groups_race_for_one_person(gateway, client: httpx.Client,
                                           make_user: Callable[[], User],
                                           admin: psycopg.Connection) -> None:
    """Twenty creators, all friends of one target, like one event with the target at
    once: the target ends up in exactly one pending group."""
    host, target = make_user(), make_user()
    event_id = create_event(client, host)
    creators = [make_user() for _ in range(20)]
    for creator in creators:
        befriend(client, creator, target)

    responses = at_once(gateway, [(f"/events/{event_id}/like", {"memberIds": [target.id]},
                                   creator.headers) for creator in creators])

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 19}, [r.text for r in responses if r.status_code != 409]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "PT409"
    [winner] = [r.json() for r in responses if r.status_code == 201]
    assert sorted(winner["memberIds"]) == sorted([winner["creatorId"], target.id])

    rows = admin.execute(
        "select group_id::text from app.like_group_members "
        "where event_id = %s and user_id = %s and pending", (event_id, target.id)).fetchall()
    assert rows == [(winner["id"],)]
    # The refused likes left no group behind.
    groups = admin.execute("select id::text from app.like_groups where event_id = %s",
                           (event_id,)).fetchall()
    assert groups == [(winner["id"],)]


def test_fifteen_adds_to_one_group(gateway, client: httpx.Client,
                                   make_user: Callable[[], User],
                                   admin: psycopg.Connection) -> None:
    """A group of its creator alone; fifteen friends added at once: nine fit."""
    host, creator = make_user(), make_user()
    event_id = create_event(client, host)
    friends = [make_user() for _ in range(15)]
    for friend in friends:
        befriend(client, creator, friend)
    group = like(client, creator, event_id, [])
    gid = group["id"]
    assert group["memberIds"] == [creator.id]

    responses = at_once(gateway, [(f"/groups/{gid}/members", {"userId": friend.id},
                                   creator.headers) for friend in friends])

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 9, 409: 6}, [r.text for r in responses if r.status_code != 409]
    added = {f.id for f, r in zip(friends, responses, strict=True) if r.status_code == 200}
    for friend, response in zip(friends, responses, strict=True):
        if response.status_code == 200:
            assert friend.id in response.json()["memberIds"]
        else:
            assert response.json()["code"] == "PT409"
    rows = admin.execute("select user_id::text from app.like_group_members where group_id = %s",
                         (gid,)).fetchall()
    assert len(rows) == 10
    assert {r[0] for r in rows} == added | {creator.id}
