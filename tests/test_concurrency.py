"""Counting under concurrency, over HTTP: requests released together by a barrier,
each on its own connection, against a real gateway and database."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from conftest import GatewayProcess, User


def at_once(gateway: GatewayProcess, requests: list[tuple[str, dict[str, Any], dict[str, str]]],
            ) -> list[httpx.Response]:
    """POSTs every (path, body, headers) from its own thread and client, all released
    by one barrier once every client has connected."""
    barrier = threading.Barrier(len(requests))

    def send(item: tuple[str, dict[str, Any], dict[str, str]]) -> httpx.Response:
        path, body, headers = item
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            assert http.get("/healthz").status_code == 200  # connection open before the race
            barrier.wait(timeout=30)
            return http.post(path, json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(send, requests))


def make_users(make_user: Callable[[], User], count: int) -> list[User]:
    return [make_user() for _ in range(count)]


def setup_group(client: httpx.Client, owner: User) -> str:
    response = client.post("/rest/v1/rpc/create_group", json={"name": "Race"},
                           headers=owner.headers)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def new_invite(client: httpx.Client, owner: User, group_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/groups/{group_id}/invite", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()["invite"]


def test_forty_users_race_for_five_uses(gateway, client: httpx.Client, make_user, admin) -> None:
    owner = make_user()
    group_id = setup_group(client, owner)
    invite = new_invite(client, owner, group_id, max_uses=5)
    joiners = make_users(make_user, 40)

    responses = at_once(gateway, [
        ("/api/groups/join", {"code": invite["code"]}, user.headers) for user in joiners])

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 5, 410: 35}, [r.text for r in responses if r.status_code not in
                                           (200, 410)]
    for response in responses:
        if response.status_code == 410:
            assert response.json()["details"] == "used_up"
            assert response.json()["code"] == "PT410"
    winners = {r.json()["membership"]["user_id"] for r in responses if r.status_code == 200}
    assert len(winners) == 5

    row = admin.execute("select use_count from app.group_invites where id = %s",
                        (invite["id"],)).fetchone()
    assert row == (5,)
    members = admin.execute(
        "select user_id::text from app.group_members where group_id = %s and role <> 'owner'",
        (group_id,)).fetchall()
    assert {m[0] for m in members} == winners
    assert len(members) == 5


def test_forty_users_join_an_unlimited_code_at_once(gateway, client: httpx.Client, make_user,
                                                    admin) -> None:
    """A code without max_uses is read without a row lock (join_group): every join
    succeeds, and use_count, raised by one UPDATE per join, counts each."""
    owner = make_user()
    group_id = setup_group(client, owner)
    invite = new_invite(client, owner, group_id)
    assert invite["max_uses"] is None
    joiners = make_users(make_user, 40)

    responses = at_once(gateway, [
        ("/api/groups/join", {"code": invite["code"]}, user.headers) for user in joiners])

    assert Counter(r.status_code for r in responses) == {200: 40}, [
        r.text for r in responses if r.status_code != 200]
    row = admin.execute("select use_count from app.group_invites where id = %s",
                        (invite["id"],)).fetchone()
    assert row == (40,)
    members = admin.execute(
        "select count(*) from app.group_members where group_id = %s and role = 'member' "
        "and invite_id = %s", (group_id, invite["id"])).fetchone()
    assert members == (40,)


def test_limiter_counts_concurrent_attempts(gateway, make_user, admin) -> None:
    user = make_user()
    responses = at_once(gateway, [
        ("/api/groups/join", {"code": str(uuid.uuid4())}, user.headers) for _ in range(25)])

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {404: 10, 429: 15}
    for response in responses:
        if response.status_code == 429:
            assert response.json()["code"] == "PT429"
            assert 1 <= int(response.headers["Retry-After"]) <= 60

    hits = admin.execute(
        "select hits from app.rate_limit_counters where user_id = %s and bucket = 'join_code'",
        (user.id,)).fetchone()
    assert hits == (10,)


def test_a_closed_window_reopens_once_under_concurrent_attempts(gateway, make_user,
                                                                 admin) -> None:
    """The counter's window closed a second ago, full: 25 attempts at once open one
    new window (the first to take the row opens it, the others count in it), so
    exactly ten are allowed, not ten per attempt that saw the closed window."""
    user = make_user()
    admin.execute("insert into app.rate_limit_counters (user_id, bucket, window_start, hits) "
                  "values (%s, 'join_code', now() - interval '61 seconds', 10)", (user.id,))
    responses = at_once(gateway, [
        ("/api/groups/join", {"code": str(uuid.uuid4())}, user.headers) for _ in range(25)])

    assert Counter(r.status_code for r in responses) == {404: 10, 429: 15}
    assert all(1 <= int(r.headers["Retry-After"]) <= 60
               for r in responses if r.status_code == 429)
    row = admin.execute(
        "select hits, window_start > now() - interval '30 seconds' from app.rate_limit_counters "
        "where user_id = %s and bucket = 'join_code'", (user.id,)).fetchone()
    assert row == (10, True)


def test_one_user_two_codes_of_one_group(gateway, client: httpx.Client, make_user, admin) -> None:
    owner, joiner = make_user(), make_user()
    group_id = setup_group(client, owner)
    first = new_invite(client, owner, group_id)
    second = new_invite(client, owner, group_id)

    responses = at_once(gateway, [
        ("/api/groups/join", {"code": first["code"]}, joiner.headers),
        ("/api/groups/join", {"code": second["code"]}, joiner.headers),
    ])

    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    memberships = [r.json()["membership"] for r in responses]
    assert memberships[0] == memberships[1]
    rows = admin.execute(
        "select user_id::text, role from app.group_members where group_id = %s and user_id = %s",
        (group_id, joiner.id)).fetchall()
    assert rows == [(joiner.id, "member")]
    total = admin.execute(
        "select sum(use_count) from app.group_invites where id in (%s, %s)",
        (first["id"], second["id"])).fetchone()
    assert total == (1,)


def member_counts(admin, group_id: str) -> tuple[int, int]:
    """(member_count kept on the group, the real count of its members)."""
    row = admin.execute(
        "select g.member_count, (select count(*) from app.group_members m where m.group_id = g.id)"
        " from app.groups g where g.id = %s", (group_id,)).fetchone()
    assert row is not None
    return row[0], row[1]


def test_member_count_under_joins_and_leaves_at_once(gateway, client: httpx.Client, make_user,
                                                     admin) -> None:
    """30 joins through three codes, 10 leaves and the owner's leave (a hand-over),
    all released at once: member_count ends equal to count(*), 30."""
    owner = make_user()
    group_id = setup_group(client, owner)
    codes = [new_invite(client, owner, group_id)["code"] for _ in range(3)]
    leavers = make_users(make_user, 10)
    for user in leavers:
        joined = client.post("/api/groups/join", json={"code": codes[0]}, headers=user.headers)
        assert joined.status_code == 200, joined.text
    assert member_counts(admin, group_id) == (11, 11)
    joiners = make_users(make_user, 30)

    responses = at_once(gateway, [
        ("/api/groups/join", {"code": codes[n % 3]}, user.headers)
        for n, user in enumerate(joiners)
    ] + [
        ("/rest/v1/rpc/leave_group", {"group_id": group_id}, user.headers)
        for user in [*leavers, owner]
    ])

    assert [r.status_code for r in responses] == [200] * 30 + [204] * 11, [
        r.text for r in responses if r.status_code >= 300]
    assert member_counts(admin, group_id) == (30, 30)
    owners = admin.execute("select count(*) from app.group_members where group_id = %s "
                           "and role = 'owner'", (group_id,)).fetchone()
    assert owners == (1,)
    broken = admin.execute("select broken from private.verify() "
                           "where invariant = 'group_member_count'").fetchone()
    assert broken == (0,)


def test_member_count_when_joins_race_one_user_twice(gateway, client: httpx.Client, make_user,
                                                     admin) -> None:
    """Each of 10 users joins through two codes at once (20 requests): one membership
    each, counted once."""
    owner = make_user()
    group_id = setup_group(client, owner)
    first, second = (new_invite(client, owner, group_id)["code"] for _ in range(2))
    users = make_users(make_user, 10)

    responses = at_once(gateway, [
        ("/api/groups/join", {"code": code}, user.headers)
        for user in users for code in (first, second)])

    assert [r.status_code for r in responses] == [200] * 20
    assert member_counts(admin, group_id) == (11, 11)
