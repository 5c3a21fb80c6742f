"""Races that used to deadlock, at scale over HTTP, against the suite's gateway:
50 inviters re-creating their invites while their partners accept them, and
joins against the last member's leave. Bounded: one burst each, released by a
barrier. Zero 5xx, and every pair and group ends in one of the states its
interleaving allows."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import psycopg

if TYPE_CHECKING:
    from conftest import GatewayProcess, User

PAIRS = 50
GROUPS = 25


def at_once(gateway: GatewayProcess, requests: list[tuple[str, dict[str, Any], dict[str, str]]],
            ) -> list[httpx.Response]:
    barrier = threading.Barrier(len(requests))

    def send(item: tuple[str, dict[str, Any], dict[str, str]]) -> httpx.Response:
        path, body, headers = item
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            assert http.get("/healthz").status_code == 200
            barrier.wait(timeout=60)
            return http.post(path, json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(send, requests))


def test_inviters_recreate_while_partners_accept(
        gateway: GatewayProcess, client: httpx.Client, make_user: Callable[[], User],
        admin: psycopg.Connection) -> None:
    owner = make_user()
    response = client.post("/rest/v1/rpc/create_event", headers=owner.headers, json={
        "title": "Stress cup", "capacity": 4 * PAIRS,
        "registration_deadline": (datetime.now(UTC) + timedelta(days=2)).isoformat()})
    assert response.status_code == 200, response.text
    event_id = response.json()["id"]
    inviters = [make_user() for _ in range(PAIRS)]
    invitees = [make_user() for _ in range(PAIRS)]
    tokens = []
    for inviter, invitee in zip(inviters, invitees, strict=True):
        invite = client.post(f"/api/events/{event_id}/invite", json={}, headers=inviter.headers)
        assert invite.status_code == 201, invite.text
        joined = client.post("/api/invites/join", json={"code": invite.json()["short_code"]},
                             headers=invitee.headers)
        assert joined.status_code == 200, joined.text
        tokens.append(joined.json()["token"])

    requests = []
    for inviter, invitee, token in zip(inviters, invitees, tokens, strict=True):
        requests.append((f"/api/events/{event_id}/invite", {}, inviter.headers))
        requests.append((f"/api/invites/{token}/accept", {}, invitee.headers))
    responses = at_once(gateway, requests)

    assert not [r.text for r in responses if r.status_code >= 500]
    outcomes = Counter()
    for i in range(PAIRS):
        created, accepted = responses[2 * i], responses[2 * i + 1]
        pair = (created.status_code, accepted.status_code)
        # The accept went first (the inviter is registered now), or the new invite
        # revoked the one being accepted.
        assert pair in ((409, 200), (201, 410)), (created.text, accepted.text)
        if pair == (409, 200):
            assert created.json()["details"] == "already_registered"
        else:
            assert accepted.json()["details"] == "revoked"
        outcomes[pair] += 1
    registered = admin.execute(
        "select count(*) from app.registrations where event_id = %s and status = 'confirmed'",
        (event_id,)).fetchone()
    assert registered == (2 * outcomes[(409, 200)],)
    seats = admin.execute("select seats_taken from app.events where id = %s",
                          (event_id,)).fetchone()
    assert seats == registered


def test_joins_against_the_last_members_leave(
        gateway: GatewayProcess, client: httpx.Client, make_user: Callable[[], User],
        admin: psycopg.Connection) -> None:
    owners = [make_user() for _ in range(GROUPS)]
    joiners = [make_user() for _ in range(GROUPS)]
    groups, codes = [], []
    for owner in owners:
        group = client.post("/rest/v1/rpc/create_group", json={"name": "Last"},
                            headers=owner.headers)
        assert group.status_code == 200, group.text
        invite = client.post(f"/api/groups/{group.json()['id']}/invite", json={},
                             headers=owner.headers)
        assert invite.status_code == 201, invite.text
        groups.append(group.json()["id"])
        codes.append(invite.json()["invite"]["code"])

    requests = []
    for owner, joiner, group_id, code in zip(owners, joiners, groups, codes, strict=True):
        requests.append(("/rest/v1/rpc/leave_group", {"group_id": group_id}, owner.headers))
        requests.append(("/api/groups/join", {"code": code}, joiner.headers))
    responses = at_once(gateway, requests)

    assert not [r.text for r in responses if r.status_code >= 500]
    for i, (group_id, joiner) in enumerate(zip(groups, joiners, strict=True)):
        left, joined = responses[2 * i], responses[2 * i + 1]
        assert left.status_code == 204, left.text
        members = admin.execute("select user_id::text, role from app.group_members "
                                "where group_id = %s", (group_id,)).fetchall()
        if joined.status_code == 200:
            # Joined first: the owner's leave handed the group over to the joiner.
            assert members == [(joiner.id, "owner")]
        else:
            assert joined.status_code == 404, joined.text
            assert members == []
