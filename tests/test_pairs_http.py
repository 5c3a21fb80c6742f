"""Pair registration over the seed's routes (seed 004), against a real gateway:
invite by email or code, join by code, accept / decline by token (in the path or
the body), the refusals and their statuses, revocation, the join limiter, and no
token or code ever written to the gateway's log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from conftest import start_gateway, stop_gateway

if TYPE_CHECKING:
    from conftest import User

# Every token and short code seen by this module, checked against the gateway's log.
SECRETS: set[str] = set()

NOT_FOUND_CODE = {
    "code": "PT404", "message": "No open invitation with this code.", "details": "not_found",
    "hint": None,
}


def future(days: float = 3) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def create_event(client: httpx.Client, user: User, *, capacity: int | None = 10,
                 deadline: str | None = None, title: str = "Padel open") -> dict[str, Any]:
    response = client.post("/rest/v1/rpc/create_event", headers=user.headers, json={
        "title": title, "registration_deadline": deadline or future(), "capacity": capacity})
    assert response.status_code == 200, response.text
    return response.json()


def invite(client: httpx.Client, inviter: User, event_id: str,
           email: str | None = None) -> dict[str, Any]:
    body = {"email": email} if email is not None else {}
    response = client.post(f"/api/events/{event_id}/invite", json=body, headers=inviter.headers)
    assert response.status_code == 201, response.text
    data = response.json()
    assert set(data) == {"success", "id", "short_code", "expires_at"}, data
    assert data["success"] is True
    SECRETS.add(data["short_code"])
    return data


def join(client: httpx.Client, user: User, code: str) -> httpx.Response:
    return client.post("/api/invites/join", json={"code": code}, headers=user.headers)


def join_token(client: httpx.Client, user: User, code: str) -> str:
    response = join(client, user, code)
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    SECRETS.add(token)
    return token


def accept(client: httpx.Client, user: User, token: str, *, in_body: bool = False
           ) -> httpx.Response:
    if in_body:
        return client.post("/api/invites/accept", json={"token": token}, headers=user.headers)
    return client.post(f"/api/invites/{token}/accept", headers=user.headers)


def decline(client: httpx.Client, user: User, token: str, *, in_body: bool = False
            ) -> httpx.Response:
    if in_body:
        return client.post("/api/invites/decline", json={"token": token}, headers=user.headers)
    return client.post(f"/api/invites/{token}/decline", headers=user.headers)


def typed(code: str) -> str:
    """A code as a person might type it: lower case, with a dash in the middle."""
    return f"{code[:4].lower()}-{code[4:].lower()}"


def registrations(admin, event_id: str) -> list[tuple[str, str, str | None]]:
    return [(r[0], r[1], r[2]) for r in admin.execute(
        "select user_id::text, status, pair_id::text from app.registrations "
        "where event_id = %s order by user_id", (event_id,)).fetchall()]


def seats_taken(admin, event_id: str) -> int:
    row = admin.execute("select seats_taken from app.events where id = %s", (event_id,)).fetchone()
    assert row is not None
    return int(row[0])


def invite_status(admin, invite_id: str) -> str:
    row = admin.execute("select status from app.pair_invites where id = %s",
                        (invite_id,)).fetchone()
    assert row is not None
    return str(row[0])


def error(response: httpx.Response, status: int, details: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}, body
    # docs/http.md, "Errors": 42501 for a refusal of privilege, PTxyz otherwise.
    assert body["code"] == ("42501" if status == 403 else f"PT{status}"), body
    assert body["details"] == details, body
    assert "token" not in body or body.get("token") is None
    return body


def test_emailed_invite_join_and_accept_by_path(client: httpx.Client, make_user, admin) -> None:
    inviter, invitee = make_user("Anna Inviter"), make_user("Bo Invitee")
    event = create_event(client, inviter, title="Spring doubles")
    created = invite(client, inviter, event["id"], email=invitee.email)
    assert len(created["short_code"]) == 8
    assert "token" not in created

    joined = join(client, invitee, typed(created["short_code"]))
    assert joined.status_code == 200, joined.text
    body = joined.json()
    assert set(body) == {"success", "token", "event", "inviter", "expires_at"}, body
    token = body["token"]
    SECRETS.add(token)
    assert body == {
        "success": True, "token": token,
        "event": {"id": event["id"], "title": "Spring doubles"},
        "inviter": {"display_name": "Anna Inviter"},
        "expires_at": created["expires_at"],
    }
    assert len(token) >= 40

    accepted = accept(client, invitee, token)
    assert accepted.status_code == 200, accepted.text
    result = accepted.json()
    assert set(result) == {"success", "pair_id", "event_id", "registrations"}, result
    pair_id = result["pair_id"]
    uuid.UUID(pair_id)
    assert result == {
        "success": True, "pair_id": pair_id, "event_id": event["id"],
        "registrations": [
            {"user_id": inviter.id, "status": "confirmed"},
            {"user_id": invitee.id, "status": "confirmed"},
        ],
    }
    assert registrations(admin, event["id"]) == sorted([
        (inviter.id, "confirmed", pair_id), (invitee.id, "confirmed", pair_id)])
    assert seats_taken(admin, event["id"]) == 2
    assert invite_status(admin, created["id"]) == "accepted"

    # Accepting again answers the same and changes nothing; also via the body.
    again = accept(client, invitee, token)
    assert again.status_code == 200, again.text
    assert again.json() == result
    again_body = accept(client, invitee, token, in_body=True)
    assert again_body.status_code == 200, again_body.text
    assert again_body.json() == result
    assert seats_taken(admin, event["id"]) == 2
    assert len(registrations(admin, event["id"])) == 2

    # The code is used: joining it again gets the generic 404.
    assert join(client, make_user(), created["short_code"]).json() == NOT_FOUND_CODE

    # Tokens are stored only as hashes.
    stored = admin.execute(
        "select t::text from app.pair_invite_tokens t where invite_id = %s",
        (created["id"],)).fetchall()
    assert len(stored) == 1
    assert token not in stored[0][0]


def test_code_invite_accept_by_body(client: httpx.Client, make_user, admin) -> None:
    inviter, partner = make_user(), make_user()
    event = create_event(client, inviter)
    created = invite(client, inviter, event["id"])
    token = join_token(client, partner, created["short_code"].lower())

    accepted = accept(client, partner, token, in_body=True)
    assert accepted.status_code == 200, accepted.text
    result = accepted.json()
    assert result == {
        "success": True, "pair_id": result["pair_id"], "event_id": event["id"],
        "registrations": [
            {"user_id": inviter.id, "status": "confirmed"},
            {"user_id": partner.id, "status": "confirmed"},
        ],
    }
    again = accept(client, partner, token)
    assert again.status_code == 200, again.text
    assert again.json() == result
    assert registrations(admin, event["id"]) == sorted([
        (inviter.id, "confirmed", result["pair_id"]), (partner.id, "confirmed", result["pair_id"])])
    assert seats_taken(admin, event["id"]) == 2

    # The code is used up: anyone else joining it gets the generic 404.
    late = join(client, make_user(), created["short_code"])
    assert late.status_code == 404, late.text
    assert late.json() == NOT_FOUND_CODE


def test_same_answer_for_email_without_account(client: httpx.Client, make_user, admin) -> None:
    inviter = make_user()
    known = make_user()
    event = create_event(client, inviter)
    nobody = f"nobody-{uuid.uuid4().hex[:12]}@example.com"

    first = client.post(f"/api/events/{event['id']}/invite", json={"email": known.email},
                        headers=inviter.headers)
    second = client.post(f"/api/events/{event['id']}/invite", json={"email": nobody},
                         headers=inviter.headers)
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    one, two = first.json(), second.json()
    SECRETS.update({one["short_code"], two["short_code"]})
    assert set(one) == set(two) == {"success", "id", "short_code", "expires_at"}
    assert one["success"] is two["success"] is True
    assert dict(first.headers).keys() - {"date", "content-length"} == \
        dict(second.headers).keys() - {"date", "content-length"}

    # Both queued a message; the second invite revoked the first.
    rows = admin.execute(
        "select to_email from app.mail_outbox where to_email in (%s, %s) order by to_email",
        (known.email.lower(), nobody)).fetchall()
    assert sorted(r[0] for r in rows) == sorted([known.email.lower(), nobody])
    assert invite_status(admin, one["id"]) == "revoked"
    assert invite_status(admin, two["id"]) == "sent"


def test_decline_by_path_and_by_body(client: httpx.Client, make_user, admin) -> None:
    inviter_a, inviter_b, invitee = make_user(), make_user(), make_user()
    event = create_event(client, inviter_a)
    by_path = invite(client, inviter_a, event["id"], email=invitee.email)
    by_body = invite(client, inviter_b, event["id"])

    token_a = join_token(client, invitee, by_path["short_code"])
    declined = decline(client, invitee, token_a)
    assert declined.status_code == 200, declined.text
    assert declined.json() == {"success": True, "id": by_path["id"], "status": "declined"}
    again = decline(client, invitee, token_a, in_body=True)
    assert again.status_code == 200, again.text
    assert again.json() == declined.json()

    token_b = join_token(client, invitee, by_body["short_code"])
    declined_b = decline(client, invitee, token_b, in_body=True)
    assert declined_b.status_code == 200, declined_b.text
    assert declined_b.json() == {"success": True, "id": by_body["id"], "status": "declined"}

    # A declined invite cannot be accepted, and its code is gone.
    error(accept(client, invitee, token_a), 410, "declined")
    error(accept(client, invitee, token_b, in_body=True), 410, "declined")
    assert join(client, make_user(), by_path["short_code"]).json() == NOT_FOUND_CODE

    assert registrations(admin, event["id"]) == []
    assert seats_taken(admin, event["id"]) == 0
    assert invite_status(admin, by_path["id"]) == "declined"
    assert invite_status(admin, by_body["id"]) == "declined"


def test_unknown_expired_revoked_codes_get_one_404(client: httpx.Client, make_user,
                                                   admin) -> None:
    inviter_a, inviter_b, inviter_c, joiner = make_user(), make_user(), make_user(), make_user()
    event = create_event(client, inviter_a)
    expired = invite(client, inviter_a, event["id"])
    admin.execute("update app.pair_invites set expires_at = now() - interval '1 minute' "
                  "where id = %s", (expired["id"],))
    revoked = invite(client, inviter_b, event["id"])
    revoke = client.post("/rest/v1/rpc/revoke_pair_invite", json={"invite_id": revoked["id"]},
                         headers=inviter_b.headers)
    assert revoke.status_code == 200, revoke.text
    assert revoke.json() == {"id": revoked["id"], "status": "revoked"}
    # Replaced: a second invite by the same inviter revokes the first.
    replaced = invite(client, inviter_c, event["id"])
    current = invite(client, inviter_c, event["id"])
    assert replaced["short_code"] != current["short_code"]

    responses = [join(client, joiner, code) for code in (
        "ZZZZ2222", expired["short_code"], typed(revoked["short_code"]), replaced["short_code"])]
    for response in responses:
        assert response.status_code == 404, response.text
        assert "retry-after" not in response.headers
    assert {r.text for r in responses} == {responses[0].text}
    assert responses[0].json() == NOT_FOUND_CODE

    # The current one still works.
    assert join(client, joiner, typed(current["short_code"])).status_code == 200
    # No token was issued for the refused codes.
    issued = admin.execute(
        "select count(*) from app.pair_invite_tokens where invite_id in (%s, %s, %s)",
        (expired["id"], revoked["id"], replaced["id"])).fetchone()
    assert issued == (0,)
    audit = admin.execute(
        "select outcome, status from app.audit_log where actor_id = %s "
        "and action = 'pair_invite.join' order by id", (joiner.id,)).fetchall()
    assert audit == [("not_found", 404)] * 4 + [("token_issued", 200)]


def test_token_issued_before_expiry_or_revocation_gets_410(client: httpx.Client, make_user,
                                                          admin) -> None:
    inviter_a, inviter_b, partner = make_user(), make_user(), make_user()
    event = create_event(client, inviter_a)
    soon_expired = invite(client, inviter_a, event["id"])
    revoked = invite(client, inviter_b, event["id"])
    token_expired = join_token(client, partner, soon_expired["short_code"])
    token_revoked = join_token(client, partner, revoked["short_code"])

    admin.execute("update app.pair_invites set expires_at = now() - interval '1 second' "
                  "where id = %s", (soon_expired["id"],))
    revoke = client.post("/rest/v1/rpc/revoke_pair_invite", json={"invite_id": revoked["id"]},
                         headers=inviter_b.headers)
    assert revoke.status_code == 200, revoke.text

    error(accept(client, partner, token_expired), 410, "expired")
    error(accept(client, partner, token_revoked, in_body=True), 410, "revoked")
    error(decline(client, partner, token_revoked), 410, "revoked")
    assert registrations(admin, event["id"]) == []
    assert seats_taken(admin, event["id"]) == 0

    unknown = accept(client, partner, "x" * 43)
    assert unknown.json() == {"code": "PT404", "message": "No invitation for this token.",
                              "details": "not_found", "hint": None}
    assert unknown.status_code == 404


def test_wrong_account_and_own_invite_get_403(client: httpx.Client, make_user, admin) -> None:
    inviter, addressee, stranger = make_user(), make_user(), make_user()
    event = create_event(client, inviter)
    created = invite(client, inviter, event["id"], email=addressee.email.upper())

    stranger_token = join_token(client, stranger, created["short_code"])
    wrong = error(accept(client, stranger, stranger_token), 403, "other_addressee")
    assert wrong["message"] == "This invitation was sent to another email address."
    error(decline(client, stranger, stranger_token, in_body=True), 403, "other_addressee")

    own_token = join_token(client, inviter, created["short_code"])
    error(accept(client, inviter, own_token), 403, "own_invite")
    error(accept(client, inviter, own_token, in_body=True), 403, "own_invite")
    error(decline(client, inviter, own_token), 403, "own_invite")

    assert registrations(admin, event["id"]) == []
    assert invite_status(admin, created["id"]) == "sent"

    # The addressee (email compared without case) still can.
    token = join_token(client, addressee, created["short_code"])
    accepted = accept(client, addressee, token)
    assert accepted.status_code == 200, accepted.text
    assert [r["user_id"] for r in accepted.json()["registrations"]] == [inviter.id, addressee.id]
    # The stranger's token now meets an answered invite.
    error(accept(client, stranger, stranger_token), 403, "other_addressee")


def test_accept_after_deadline_is_410(client: httpx.Client, make_user, admin) -> None:
    inviter, partner = make_user(), make_user()
    event = create_event(client, inviter, deadline=future(days=1))
    created = invite(client, inviter, event["id"])
    token = join_token(client, partner, created["short_code"])
    admin.execute("update app.events set registration_deadline = now() - interval '1 minute' "
                  "where id = %s", (event["id"],))

    body = error(accept(client, partner, token), 410, "deadline")
    assert body["message"] == "Registration for this event is closed."
    assert registrations(admin, event["id"]) == []
    assert seats_taken(admin, event["id"]) == 0
    assert invite_status(admin, created["id"]) == "sent"

    # No new invites either (400, closed by its deadline).
    refused = client.post(f"/api/events/{event['id']}/invite", json={},
                          headers=make_user().headers)
    error(refused, 400, "deadline")


def test_invite_lifetime_never_past_deadline(client: httpx.Client, make_user) -> None:
    inviter = make_user()
    deadline = datetime.now(UTC) + timedelta(hours=2)
    event = create_event(client, inviter, deadline=deadline.isoformat())
    created = invite(client, inviter, event["id"])
    expires = datetime.fromisoformat(created["expires_at"])
    assert abs((expires - deadline).total_seconds()) < 1

    far = create_event(client, inviter, deadline=future(days=30))
    created = invite(client, inviter, far["id"])
    lifetime = datetime.fromisoformat(created["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=6, hours=23) < lifetime <= timedelta(days=7)


def test_refusals_when_creating_and_accepting(client: httpx.Client, make_user, admin) -> None:
    inviter, partner, solo = make_user(), make_user(), make_user()

    # Unknown event, invalid email.
    error(client.post(f"/api/events/{uuid.uuid4()}/invite", json={}, headers=inviter.headers),
          404, "not_found")
    event = create_event(client, inviter, capacity=3)
    bad = client.post(f"/api/events/{event['id']}/invite", json={"email": "not-an-email"},
                      headers=inviter.headers)
    error(bad, 400, "invitee_email")

    # A registered inviter cannot invite; a registered partner cannot accept.
    registered = client.post("/rest/v1/rpc/register_for_event", json={"event_id": event["id"]},
                             headers=solo.headers)
    assert registered.status_code == 200, registered.text
    error(client.post(f"/api/events/{event['id']}/invite", json={}, headers=solo.headers),
          409, "already_registered")
    created = invite(client, inviter, event["id"])
    token = join_token(client, solo, created["short_code"])
    error(accept(client, solo, token), 409, "already_registered")

    # Two seats were free when invited; one is taken meanwhile: full.
    other = client.post("/rest/v1/rpc/register_for_event", json={"event_id": event["id"]},
                        headers=make_user().headers)
    assert other.status_code == 200, other.text
    token = join_token(client, partner, created["short_code"])
    error(accept(client, partner, token), 409, "full")
    assert seats_taken(admin, event["id"]) == 2
    # And no new invite without two free seats.
    error(client.post(f"/api/events/{event['id']}/invite", json={},
                      headers=make_user().headers), 409, "full")
    assert sorted(r[0] for r in registrations(admin, event["id"])) == sorted(
        [solo.id, other.json()["user_id"]])


def test_my_pair_invites_sent_and_received(client: httpx.Client, make_user) -> None:
    inviter, invitee = make_user("Carla"), make_user("Dani")
    event = create_event(client, inviter, title="Summer cup")
    created = invite(client, inviter, event["id"], email=invitee.email)

    received = client.post("/rest/v1/rpc/my_pair_invites", json={}, headers=invitee.headers)
    assert received.status_code == 200, received.text
    mine = received.json()
    assert set(mine) == {"sent", "received"}
    assert mine["sent"] == []
    assert len(mine["received"]) == 1
    entry = mine["received"][0]
    assert entry["id"] == created["id"]
    assert entry["status"] == "sent"
    assert entry["event"] == {"id": event["id"], "title": "Summer cup"}
    assert entry["inviter"] == {"id": inviter.id, "display_name": "Carla"}
    assert "invitee_email" not in entry
    assert "short_code" not in entry
    assert not any("token" in key for key in entry)

    token = join_token(client, invitee, created["short_code"])
    accepted = accept(client, invitee, token)
    assert accepted.status_code == 200, accepted.text
    pair_id = accepted.json()["pair_id"]

    sent = client.get("/rest/v1/rpc/my_pair_invites", headers=inviter.headers)
    assert sent.status_code == 200, sent.text
    theirs = sent.json()
    assert theirs["received"] == []
    assert len(theirs["sent"]) == 1
    row = theirs["sent"][0]
    assert {k: row[k] for k in ("id", "status", "short_code", "invitee_email", "pair_id",
                                "event", "expires_at")} == {
        "id": created["id"], "status": "accepted", "short_code": created["short_code"],
        "invitee_email": invitee.email.lower(), "pair_id": pair_id,
        "event": {"id": event["id"], "title": "Summer cup"}, "expires_at": created["expires_at"],
    }
    assert row["accepted_at"] is not None
    assert not any("token" in key for key in row)

    after = client.post("/rest/v1/rpc/my_pair_invites", json={}, headers=invitee.headers)
    assert [(r["id"], r["status"], r["pair_id"]) for r in after.json()["received"]] == [
        (created["id"], "accepted", pair_id)]
    # A stranger sees nothing of it.
    stranger = client.post("/rest/v1/rpc/my_pair_invites", json={}, headers=make_user().headers)
    assert stranger.json() == {"sent": [], "received": []}


def test_revoke_pair_invite(client: httpx.Client, make_user, admin) -> None:
    inviter, other, partner = make_user(), make_user(), make_user()
    event = create_event(client, inviter)
    created = invite(client, inviter, event["id"])
    token = join_token(client, partner, created["short_code"])

    not_mine = client.post("/rest/v1/rpc/revoke_pair_invite", json={"invite_id": created["id"]},
                           headers=other.headers)
    missing = client.post("/rest/v1/rpc/revoke_pair_invite", json={"invite_id": str(uuid.uuid4())},
                          headers=other.headers)
    # Someone else's invite and an unknown id: one answer, both counted and audited.
    for refused in (not_mine, missing):
        assert refused.status_code == 404, refused.text
        assert refused.json() == {"code": "PT404", "message": "Invitation not found.",
                                  "details": "not_found", "hint": None}
    assert invite_status(admin, created["id"]) == "sent"
    audited = admin.execute(
        "select outcome, status, subject_id::text from app.audit_log "
        "where action = 'pair_invite.revoke' and actor_id = %s order by id", (other.id,)).fetchall()
    assert audited == [("not_allowed", 404, created["id"]), ("not_found", 404, None)]
    counted = admin.execute(
        "select hits from app.rate_limit_counters where user_id = %s and bucket = 'revoke_invite'",
        (other.id,)).fetchone()
    assert counted == (2,)

    revoked = client.post("/rest/v1/rpc/revoke_pair_invite", json={"invite_id": created["id"]},
                          headers=inviter.headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"id": created["id"], "status": "revoked"}
    twice = client.post("/rest/v1/rpc/revoke_pair_invite", json={"invite_id": created["id"]},
                        headers=inviter.headers)
    assert twice.status_code == 200, twice.text
    assert twice.json() == {"id": created["id"], "status": "revoked"}

    error(accept(client, partner, token), 410, "revoked")
    assert join(client, partner, created["short_code"]).json() == NOT_FOUND_CODE
    assert registrations(admin, event["id"]) == []

    # A revoked inviter may invite again.
    again = invite(client, inviter, event["id"])
    assert again["short_code"] != created["short_code"]


def test_anon_gets_401_on_every_seed_route(client: httpx.Client, make_user, admin) -> None:
    inviter = make_user()
    event = create_event(client, inviter)
    created = invite(client, inviter, event["id"])
    token = join_token(client, make_user(), created["short_code"])
    calls = [
        (f"/api/events/{event['id']}/invite", {"email": "x@example.com"}),
        ("/api/invites/join", {"code": created["short_code"]}),
        (f"/api/invites/{token}/accept", None),
        ("/api/invites/accept", {"token": token}),
        (f"/api/invites/{token}/decline", None),
        ("/api/invites/decline", {"token": token}),
    ]
    for path, body in calls:
        response = client.post(path, json=body)
        assert response.status_code == 401, (path, response.text)
        assert set(response.json()) == {"code", "message", "details", "hint"}
        assert token not in response.text
        bad = client.post(path, json=body, headers={"Authorization": "Bearer not.a.jwt"})
        assert bad.status_code == 401, (path, bad.text)
        assert bad.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert invite_status(admin, created["id"]) == "sent"
    rows = admin.execute("select count(*) from app.pair_invites where event_id = %s",
                         (event["id"],)).fetchone()
    assert rows == (1,)


def test_eleventh_join_is_429_even_with_the_right_code(client: httpx.Client, make_user,
                                                       admin) -> None:
    inviter, joiner = make_user(), make_user()
    event = create_event(client, inviter)
    created = invite(client, inviter, event["id"])
    for i in range(10):
        wrong = join(client, joiner, f"WRNG{i}ABC"[:8])
        assert wrong.status_code == 404, wrong.text
        assert wrong.json() == NOT_FOUND_CODE

    limited = join(client, joiner, created["short_code"])
    assert limited.status_code == 429, limited.text
    retry_after = limited.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60, retry_after
    assert limited.json() == {
        "code": "PT429", "message": "Too many attempts. Try again later.",
        "details": f"retry after {retry_after} seconds", "hint": None,
    }
    assert "token" not in limited.text
    issued = admin.execute("select count(*) from app.pair_invite_tokens where invite_id = %s",
                           (created["id"],)).fetchone()
    assert issued == (0,)
    audit = admin.execute(
        "select outcome, status from app.audit_log where actor_id = %s "
        "and action = 'pair_invite.join' order by id", (joiner.id,)).fetchall()
    assert audit == [("not_found", 404)] * 10 + [("rate_limited", 429)]
    # Someone else is not limited by it.
    assert join(client, make_user(), created["short_code"]).status_code == 200


def test_no_token_or_code_in_the_gateway_log(gateway, client: httpx.Client, make_user) -> None:
    inviter, invitee, other = make_user(), make_user(), make_user()
    event = create_event(client, inviter)
    emailed = invite(client, inviter, event["id"], email=invitee.email)
    token = join_token(client, invitee, typed(emailed["short_code"]))
    assert accept(client, invitee, token).status_code == 200
    assert accept(client, invitee, token, in_body=True).status_code == 200
    by_code = invite(client, other, create_event(client, other)["id"])
    declining = make_user()
    token_2 = join_token(client, declining, by_code["short_code"])
    assert decline(client, declining, token_2).status_code == 200
    assert decline(client, declining, token_2, in_body=True).status_code == 200
    # Refused ones too: unknown token in the path, unknown code.
    unknown_token = "Zz" * 22
    SECRETS.update({unknown_token, "QQQQ7777"})
    assert accept(client, invitee, unknown_token).status_code == 404
    assert join(client, declining, "QQQQ7777").status_code == 404

    log = gateway.log()
    assert log.strip(), "the gateway log is empty"
    assert "/api/invites/{token}/accept" in log  # the route template, not the path
    assert len(SECRETS) >= 6
    for secret in SECRETS:
        assert secret not in log, f"a secret appears in the gateway log: {secret[:4]}..."
        assert secret.lower() not in log.lower()
    for code in [emailed["short_code"], by_code["short_code"]]:
        assert typed(code) not in log


def test_refused_requests_leave_the_gateway_usable(database_url: str, tmp_path,
                                                   make_user) -> None:
    """Requests the database refuses (anon on the seed routes) must not break the
    pooled connections they ran on: every later valid request still succeeds."""
    gateway = start_gateway(database_url, tmp_path / "gateway.log", POOL_MIN="2", POOL_MAX="2")
    try:
        inviter, partner = make_user(), make_user()
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            event = create_event(http, inviter)
            created = invite(http, inviter, event["id"])
            token = join_token(http, partner, created["short_code"])
            refused = []
            for path, body in [
                (f"/api/events/{event['id']}/invite", {"email": "x@example.com"}),
                ("/api/invites/join", {"code": created["short_code"]}),
                (f"/api/invites/{token}/accept", None),
                ("/api/invites/accept", {"token": token}),
                (f"/api/invites/{token}/decline", None),
                ("/api/invites/decline", {"token": token}),
            ]:
                refused.append(http.post(path, json=body).status_code)
                refused.append(http.post(path, json=body, headers={
                    "Authorization": "Bearer not.a.jwt"}).status_code)
            assert refused == [401] * 12
            later = [http.post("/rest/v1/rpc/create_event", headers=inviter.headers,
                               json={"title": f"After {i}", "capacity": 4})
                     for i in range(6)]
            assert [r.status_code for r in later] == [200] * 6, [r.text for r in later]
            accepted = accept(http, partner, token)
            assert accepted.status_code == 200, accepted.text
    finally:
        stop_gateway(gateway)
