"""Pair acceptances racing for seats, over HTTP: every accept released together by
a barrier, each from its own thread and client, against a real gateway."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
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


def create_event(client: httpx.Client, user: User, capacity: int) -> str:
    deadline = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    response = client.post("/rest/v1/rpc/create_event", headers=user.headers, json={
        "title": "Race cup", "registration_deadline": deadline, "capacity": capacity})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def invite_code(client: httpx.Client, inviter: User, event_id: str) -> dict[str, Any]:
    response = client.post(f"/api/events/{event_id}/invite", json={}, headers=inviter.headers)
    assert response.status_code == 201, response.text
    return response.json()


def join_token(client: httpx.Client, user: User, code: str) -> str:
    response = client.post("/api/invites/join", json={"code": code}, headers=user.headers)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def test_thirty_pairs_race_for_ten_seats(gateway, client: httpx.Client, make_user,
                                         admin) -> None:
    owner = make_user()
    event_id = create_event(client, owner, capacity=10)
    inviters = [make_user() for _ in range(30)]
    invitees = [make_user() for _ in range(30)]
    invites = [invite_code(client, inviter, event_id) for inviter in inviters]
    tokens = [join_token(client, invitee, inv["short_code"])
              for invitee, inv in zip(invitees, invites, strict=True)]

    responses = at_once(gateway, [
        (f"/api/invites/{token}/accept", {}, invitee.headers)
        for token, invitee in zip(tokens, invitees, strict=True)])

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 5, 409: 25}, [r.text for r in responses
                                           if r.status_code not in (200, 409)]
    winners: dict[str, tuple[str, str]] = {}
    for response, inviter, invitee in zip(responses, inviters, invitees, strict=True):
        body = response.json()
        if response.status_code == 409:
            assert body == {"code": "PT409", "message": "The event does not have two free seats.",
                            "details": "full", "hint": None}
        else:
            assert body == {
                "success": True, "pair_id": body["pair_id"], "event_id": event_id,
                "registrations": [{"user_id": inviter.id, "status": "confirmed"},
                                  {"user_id": invitee.id, "status": "confirmed"}],
            }
            winners[body["pair_id"]] = (inviter.id, invitee.id)
    assert len(winners) == 5

    rows = admin.execute(
        "select user_id::text, pair_id::text from app.registrations "
        "where event_id = %s and status = 'confirmed'", (event_id,)).fetchall()
    assert len(rows) == 10
    assert len({user for user, _ in rows}) == 10, "someone is registered twice"
    by_pair = Counter(pair for _, pair in rows)
    assert len(by_pair) == 5
    assert set(by_pair.values()) == {2}
    assert {pair: tuple(sorted(u for u, p in rows if p == pair)) for pair in by_pair} == {
        pair: tuple(sorted(people)) for pair, people in winners.items()}
    everything = admin.execute("select count(*) from app.registrations where event_id = %s",
                               (event_id,)).fetchone()
    assert everything == (10,)
    seats = admin.execute("select seats_taken, capacity from app.events where id = %s",
                          (event_id,)).fetchone()
    assert seats == (10, 10)

    states = Counter(r[0] for r in admin.execute(
        "select status from app.pair_invites where event_id = %s", (event_id,)).fetchall())
    assert states == {"accepted": 5, "sent": 25}
    accepted_pairs = {r[0] for r in admin.execute(
        "select pair_id::text from app.pair_invites where event_id = %s and status = 'accepted'",
        (event_id,)).fetchall()}
    assert accepted_pairs == set(winners)
    audit = Counter(r[0] for r in admin.execute(
        "select outcome from app.audit_log where action = 'pair_invite.accept' "
        "and actor_id = any(%s::uuid[])", ([u.id for u in invitees],)).fetchall())
    assert audit == {"accepted": 5, "full": 25}


def test_one_invitee_accepts_three_invites_at_once(gateway, client: httpx.Client, make_user,
                                                   admin) -> None:
    owner, invitee = make_user(), make_user()
    event_id = create_event(client, owner, capacity=20)
    inviters = [make_user() for _ in range(3)]
    invites = [invite_code(client, inviter, event_id) for inviter in inviters]
    tokens = [join_token(client, invitee, inv["short_code"]) for inv in invites]

    responses = at_once(gateway, [
        (f"/api/invites/{token}/accept", {}, invitee.headers) for token in tokens])

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: 2}, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json() == {
                "code": "PT409", "message": "One of you is already registered for this event.",
                "details": "already_registered", "hint": None}
    winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
    body = responses[winner].json()
    assert body["registrations"] == [{"user_id": inviters[winner].id, "status": "confirmed"},
                                     {"user_id": invitee.id, "status": "confirmed"}]

    rows = admin.execute(
        "select user_id::text, pair_id::text from app.registrations "
        "where event_id = %s and status = 'confirmed' order by user_id", (event_id,)).fetchall()
    assert sorted(rows) == sorted([(inviters[winner].id, body["pair_id"]),
                                   (invitee.id, body["pair_id"])])
    mine = admin.execute(
        "select count(*) from app.registrations where event_id = %s and user_id = %s",
        (event_id, invitee.id)).fetchone()
    assert mine == (1,)
    seats = admin.execute("select seats_taken from app.events where id = %s",
                          (event_id,)).fetchone()
    assert seats == (2,)
    states = [admin.execute("select status from app.pair_invites where id = %s",
                            (inv["id"],)).fetchone() for inv in invites]
    assert states == [("accepted",) if i == winner else ("sent",) for i in range(3)]
