"""The join limiter over HTTP: failed attempts count, the 11th attempt in a minute
is refused with 429 and Retry-After, and every attempt is audited without codes
(refused ones as one row per window with a count)."""

from __future__ import annotations

import uuid

import httpx

from conftest import within_one_window


def test_failed_joins_count_and_are_audited(gateway, client: httpx.Client, make_user,
                                            admin) -> None:
    owner, user = make_user(), make_user()
    created = client.post("/rest/v1/rpc/create_group", json={"name": "Limited"},
                          headers=owner.headers)
    assert created.status_code == 200, created.text
    group_id = created.json()["id"]
    invite = client.post(f"/api/groups/{group_id}/invite", json={}, headers=owner.headers)
    assert invite.status_code == 201, invite.text
    valid_code = invite.json()["invite"]["code"]

    within_one_window(60)  # the two refusals below: one audit row for their window
    unknown_codes = [str(uuid.uuid4()) for _ in range(11)]
    for code in unknown_codes[:10]:
        response = client.post("/api/groups/join", json={"code": code}, headers=user.headers)
        assert response.status_code == 404, response.text
        assert response.json()["details"] == "not_found"

    limited = client.post("/api/groups/join", json={"code": unknown_codes[10]},
                          headers=user.headers)
    assert limited.status_code == 429, limited.text
    retry_after = limited.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= 60
    body = limited.json()
    assert body == {
        "code": "PT429", "message": "Too many attempts. Try again later.",
        "details": f"retry after {retry_after} seconds", "hint": None,
    }

    # A valid code does not get past the limiter either.
    valid = client.post("/api/groups/join", json={"code": valid_code}, headers=user.headers)
    assert valid.status_code == 429, valid.text
    assert valid.json()["code"] == "PT429"
    assert "Retry-After" in valid.headers
    members = admin.execute(
        "select count(*) from app.group_members where group_id = %s and user_id = %s",
        (group_id, user.id)).fetchone()
    assert members == (0,)

    rows = admin.execute(
        "select outcome, status from app.audit_log where actor_id = %s and action = 'group.join' "
        "order by id", (user.id,)).fetchall()
    # Refused attempts: one audit row for the window, the count beside it.
    assert rows == [("not_found", 404)] * 10 + [("rate_limited", 429)]
    counted = admin.execute(
        "select refused from app.audit_refusals where actor_id = %s and action = 'group.join'",
        (user.id,)).fetchall()
    assert counted == [(2,)]

    texts = [r[0] for r in admin.execute(
        "select a::text from app.audit_log a where actor_id = %s", (user.id,)).fetchall()]
    assert len(texts) == 11
    for code in [*unknown_codes, valid_code]:
        for text in texts:
            assert code not in text.lower()

    # Neither codes nor tokens reach the gateway's log.
    log = gateway.log().lower()
    assert '"route":"/api/groups/join"' in log  # the log is written, by route template
    for secret in [*unknown_codes, valid_code, user.token.lower(), owner.token.lower()]:
        assert secret not in log
