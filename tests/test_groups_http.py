"""Groups and invite codes over HTTP, against a real gateway: the seed routes, the
generic RPC routes and the statuses the contract promises."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import psycopg

if TYPE_CHECKING:
    from conftest import User

INVITE_KEYS = {"id", "code", "group_id", "created_at", "expires_at", "max_uses"}
LISTED_INVITE_KEYS = {
    "id", "group_id", "code_hint", "created_by", "created_at", "expires_at",
    "max_uses", "use_count", "revoked_at", "active",
}


def create_group(client: httpx.Client, owner: User, name: str = "Hikers") -> dict[str, Any]:
    response = client.post("/rest/v1/rpc/create_group", json={"name": name}, headers=owner.headers)
    assert response.status_code == 200, response.text
    return response.json()


def create_invite(client: httpx.Client, owner: User, group_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/groups/{group_id}/invite", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()["invite"]


def join(client: httpx.Client, user: User, code: Any) -> httpx.Response:
    return client.post("/api/groups/join", json={"code": code}, headers=user.headers)


def use_count(admin: psycopg.Connection, invite_id: str) -> int:
    row = admin.execute(
        "select use_count from app.group_invites where id = %s", (invite_id,)).fetchone()
    assert row is not None
    return int(row[0])


def assert_refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == f"PT{status}"
    assert body["details"] == reason


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the whole flow -----------------------------------------------------------


def test_create_invite_join_and_rejoin(client: httpx.Client, make_user, admin) -> None:
    owner, joiner = make_user(), make_user()
    group = create_group(client, owner, "  Hikers  ")
    assert set(group) == {"id", "name", "creator_id", "created_at"}
    assert group["name"] == "Hikers"
    assert group["creator_id"] == owner.id

    response = client.post(f"/api/groups/{group['id']}/invite",
                           json={"max_uses": 3, "expires_in": 3600}, headers=owner.headers)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"success", "invite"}
    assert body["success"] is True
    invite = body["invite"]
    assert set(invite) == INVITE_KEYS
    assert invite["group_id"] == group["id"]
    assert invite["max_uses"] == 3
    uuid.UUID(invite["code"])
    lifetime = parse_time(invite["expires_at"]) - parse_time(invite["created_at"])
    assert lifetime.total_seconds() == 3600
    assert use_count(admin, invite["id"]) == 0

    first = join(client, joiner, invite["code"])
    assert first.status_code == 200, first.text
    joined = first.json()
    assert set(joined) == {"success", "group", "membership"}
    assert joined["success"] is True
    assert joined["group"] == {"id": group["id"], "name": "Hikers"}
    membership = joined["membership"]
    assert set(membership) == {"user_id", "group_id", "role", "joined_at"}
    assert membership["user_id"] == joiner.id
    assert membership["group_id"] == group["id"]
    assert membership["role"] == "member"
    assert use_count(admin, invite["id"]) == 1

    # Rejoining returns the same membership and consumes no use.
    again = join(client, joiner, invite["code"])
    assert again.status_code == 200, again.text
    assert again.json() == joined
    assert use_count(admin, invite["id"]) == 1

    # Codes are matched in any case.
    upper = join(client, joiner, invite["code"].upper())
    assert upper.status_code == 200, upper.text
    assert upper.json() == joined
    assert use_count(admin, invite["id"]) == 1

    rows = admin.execute(
        "select user_id::text, role, invite_id::text from app.group_members "
        "where group_id = %s order by role desc", (group["id"],)).fetchall()
    assert rows == [(owner.id, "owner", None), (joiner.id, "member", invite["id"])]


def test_invite_without_limits(client: httpx.Client, make_user) -> None:
    owner = make_user()
    group = create_group(client, owner)
    response = client.post(f"/api/groups/{group['id']}/invite", headers=owner.headers)
    assert response.status_code == 201, response.text
    invite = response.json()["invite"]
    assert set(invite) == INVITE_KEYS
    assert invite["expires_at"] is None
    assert invite["max_uses"] is None


# --- refused joins ------------------------------------------------------------


def test_missing_and_malformed_codes_are_400(client: httpx.Client, make_user) -> None:
    user = make_user()
    missing = client.post("/api/groups/join", json={}, headers=user.headers)
    assert_refused(missing, 400, "malformed")
    for code in (None, "", "abc", "not-a-code-at-all", "1234", 42):
        assert_refused(join(client, user, code), 400, "malformed")


def test_unknown_code_is_404(client: httpx.Client, make_user) -> None:
    response = join(client, make_user(), str(uuid.uuid4()))
    assert response.status_code == 404, response.text
    assert response.json() == {
        "code": "PT404", "message": "No invite with this code.",
        "details": "not_found", "hint": None,
    }


def test_expired_code_is_410(client: httpx.Client, make_user, admin) -> None:
    owner, joiner = make_user(), make_user()
    group = create_group(client, owner)
    invite = create_invite(client, owner, group["id"], expires_in=3600)
    admin.execute("update app.group_invites set expires_at = now() - interval '1 second' "
                  "where id = %s", (invite["id"],))
    assert_refused(join(client, joiner, invite["code"]), 410, "expired")
    assert use_count(admin, invite["id"]) == 0
    members = admin.execute("select count(*) from app.group_members where group_id = %s",
                            (group["id"],)).fetchone()
    assert members == (1,)


def test_used_up_code_is_410(client: httpx.Client, make_user, admin) -> None:
    owner, first, second = make_user(), make_user(), make_user()
    group = create_group(client, owner)
    invite = create_invite(client, owner, group["id"], max_uses=1)
    assert join(client, first, invite["code"]).status_code == 200
    assert_refused(join(client, second, invite["code"]), 410, "used_up")
    assert use_count(admin, invite["id"]) == 1
    # A member already in the group still gets their membership back.
    assert join(client, first, invite["code"]).status_code == 200


def test_revoked_code_is_410(client: httpx.Client, make_user, admin) -> None:
    owner, joiner = make_user(), make_user()
    group = create_group(client, owner)
    invite = create_invite(client, owner, group["id"])
    revoked = client.post("/rest/v1/rpc/revoke_group_invite", json={"code": invite["code"]},
                          headers=owner.headers)
    assert revoked.status_code == 204, revoked.text
    assert revoked.content == b""
    row = admin.execute("select revoked_at is not null from app.group_invites where id = %s",
                        (invite["id"],)).fetchone()
    assert row == (True,)
    assert_refused(join(client, joiner, invite["code"]), 410, "revoked")
    assert use_count(admin, invite["id"]) == 0


def test_join_without_token_is_401(client: httpx.Client, make_user) -> None:
    owner = make_user()
    group = create_group(client, owner)
    invite = create_invite(client, owner, group["id"])
    response = client.post("/api/groups/join", json={"code": invite["code"]})
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "42501"


# --- refused invites ----------------------------------------------------------


def test_stranger_cannot_create_invite(client: httpx.Client, make_user, admin) -> None:
    owner, stranger = make_user(), make_user()
    group = create_group(client, owner)
    response = client.post(f"/api/groups/{group['id']}/invite", json={}, headers=stranger.headers)
    assert response.status_code == 403, response.text
    assert response.json() == {
        "code": "42501", "message": "Only members of the group can create invite codes.",
        "details": "forbidden", "hint": None,
    }
    count = admin.execute("select count(*) from app.group_invites where group_id = %s",
                          (group["id"],)).fetchone()
    assert count == (0,)


def test_invite_for_missing_group_is_404(client: httpx.Client, make_user) -> None:
    response = client.post(f"/api/groups/{uuid.uuid4()}/invite", json={},
                           headers=make_user().headers)
    assert response.status_code == 404, response.text
    assert response.json() == {
        "code": "PT404", "message": "Group not found.", "details": "not_found", "hint": None}


def test_invalid_invite_limits_are_400(client: httpx.Client, make_user, admin) -> None:
    owner = make_user()
    group = create_group(client, owner)
    for body, field in (({"expires_in": 0}, "expires_in"), ({"expires_in": -5}, "expires_in"),
                        ({"max_uses": 0}, "max_uses")):
        response = client.post(f"/api/groups/{group['id']}/invite", json=body,
                               headers=owner.headers)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "PT400"
        assert response.json()["details"] == field
    count = admin.execute("select count(*) from app.group_invites where group_id = %s",
                          (group["id"],)).fetchone()
    assert count == (0,)


def test_group_id_not_a_uuid_is_400(client: httpx.Client, make_user) -> None:
    response = client.post("/api/groups/not-a-uuid/invite", json={},
                           headers=make_user().headers)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == "22P02"


# --- preview and list ---------------------------------------------------------


def test_preview_group_invite(client: httpx.Client, make_user) -> None:
    owner, joiner, viewer = make_user(), make_user(), make_user()
    group = create_group(client, owner, "Readers")
    invite = create_invite(client, owner, group["id"], max_uses=3, expires_in=600)
    assert join(client, joiner, invite["code"]).status_code == 200

    response = client.post("/rest/v1/rpc/preview_group_invite", json={"code": invite["code"]},
                           headers=viewer.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "group": {"id": group["id"], "name": "Readers", "member_count": 2},
        "expires_at": invite["expires_at"],
        "uses_left": 2,
    }
    unknown = client.post("/rest/v1/rpc/preview_group_invite", json={"code": str(uuid.uuid4())},
                          headers=viewer.headers)
    assert_refused(unknown, 404, "not_found")
    malformed = client.post("/rest/v1/rpc/preview_group_invite", json={"code": "nope"},
                            headers=viewer.headers)
    assert_refused(malformed, 400, "malformed")


def test_list_group_invites_never_shows_codes(client: httpx.Client, make_user) -> None:
    owner, joiner, stranger = make_user(), make_user(), make_user()
    group = create_group(client, owner)
    older = create_invite(client, owner, group["id"], max_uses=1)
    newer = create_invite(client, owner, group["id"], expires_in=60)
    assert join(client, joiner, older["code"]).status_code == 200

    response = client.post("/rest/v1/rpc/list_group_invites", json={"group_id": group["id"]},
                           headers=owner.headers)
    assert response.status_code == 200, response.text
    listed = response.json()
    assert [i["id"] for i in listed] == [newer["id"], older["id"]]
    for item, created in zip(listed, (newer, older), strict=True):
        assert set(item) == LISTED_INVITE_KEYS
        assert item["code_hint"] == created["code"][-4:]
        assert item["created_by"] == owner.id
        assert item["revoked_at"] is None
    assert listed[0]["use_count"] == 0 and listed[0]["active"] is True
    assert listed[1]["use_count"] == 1 and listed[1]["active"] is False
    for created in (older, newer):
        assert created["code"] not in response.text
        assert created["code"].upper() not in response.text

    # A stable function: GET works too, and members other than the owner may list.
    by_get = client.get("/rest/v1/rpc/list_group_invites", params={"group_id": group["id"]},
                        headers=joiner.headers)
    assert by_get.status_code == 200, by_get.text
    assert by_get.json() == listed

    refused = client.post("/rest/v1/rpc/list_group_invites", json={"group_id": group["id"]},
                          headers=stranger.headers)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "42501"


# --- generic RPC routes -------------------------------------------------------


def test_my_groups_by_get(client: httpx.Client, make_user) -> None:
    owner, joiner = make_user(), make_user()
    group = create_group(client, owner, "Climbers")
    invite = create_invite(client, owner, group["id"])
    assert join(client, joiner, invite["code"]).status_code == 200

    response = client.get("/rest/v1/rpc/my_groups", headers=joiner.headers)
    assert response.status_code == 200, response.text
    groups = response.json()
    assert isinstance(groups, list) and len(groups) == 1
    item = groups[0]
    assert set(item) == {"id", "name", "creator_id", "role", "member_count",
                         "created_at", "joined_at"}
    assert (item["id"], item["name"], item["creator_id"], item["role"], item["member_count"]) == (
        group["id"], "Climbers", owner.id, "member", 2)

    empty = client.get("/rest/v1/rpc/my_groups", headers=make_user().headers)
    assert empty.status_code == 200
    assert empty.json() == []


def test_get_on_volatile_function_is_405(client: httpx.Client, make_user, admin) -> None:
    user = make_user()
    response = client.get("/rest/v1/rpc/create_group", params={"name": "Nope"},
                          headers=user.headers)
    assert response.status_code == 405, response.text
    assert response.json()["code"] == "PGRST101"
    count = admin.execute("select count(*) from app.groups where creator_id = %s",
                          (user.id,)).fetchone()
    assert count == (0,)


def test_unknown_function_is_404(client: httpx.Client, make_user) -> None:
    response = client.post("/rest/v1/rpc/no_such_function", json={}, headers=make_user().headers)
    assert response.status_code == 404, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == "PGRST202"


def test_unknown_argument_is_404(client: httpx.Client, make_user) -> None:
    response = client.post("/rest/v1/rpc/create_group", json={"name": "x", "colour": "red"},
                           headers=make_user().headers)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "PGRST202"


def test_invalid_json_is_400(client: httpx.Client, make_user) -> None:
    response = client.post("/rest/v1/rpc/create_group", content=b'{"name": ',
                           headers={**make_user().headers, "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "PGRST102"


def test_body_over_one_mebibyte_is_413(client: httpx.Client, make_user) -> None:
    body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post("/rest/v1/rpc/create_group", content=body,
                           headers={**make_user().headers, "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "PGRST413"


def test_chunked_body_over_one_mebibyte_is_413(client: httpx.Client, make_user) -> None:
    # No Content-Length: the limit must hold while the body is read.
    chunks = [b'{"name": "', *([b"x" * 65536] * 17), b'"}']
    response = client.post("/rest/v1/rpc/create_group", content=iter(chunks),
                           headers={**make_user().headers, "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "PGRST413"


def test_xml_content_type_is_415(client: httpx.Client, make_user) -> None:
    response = client.post("/rest/v1/rpc/create_group", content=b"<name>x</name>",
                           headers={**make_user().headers, "Content-Type": "application/xml"})
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "PGRST107"


def test_void_function_is_204(client: httpx.Client, make_user, admin) -> None:
    owner, member = make_user(), make_user()
    group = create_group(client, owner)
    invite = create_invite(client, owner, group["id"])
    assert join(client, member, invite["code"]).status_code == 200
    response = client.post("/rest/v1/rpc/leave_group", json={"group_id": group["id"]},
                           headers=member.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    rows = admin.execute("select user_id::text from app.group_members where group_id = %s",
                         (group["id"],)).fetchall()
    assert rows == [(owner.id,)]


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True}


def test_member_count_follows_account_deletion(client: httpx.Client, make_user, admin) -> None:
    """Deleting an account takes its memberships away and one off each group's
    member_count (the groups it created go with it)."""
    owner, joiner, other = make_user(), make_user(), make_user()
    group = create_group(client, owner, "Readers")
    theirs = create_group(client, joiner, "Theirs")
    invite = create_invite(client, owner, group["id"])
    assert join(client, joiner, invite["code"]).status_code == 200
    assert join(client, other, invite["code"]).status_code == 200
    count = "select member_count from app.groups where id = %s"
    assert admin.execute(count, (group["id"],)).fetchone() == (3,)

    admin.execute("delete from auth.users where id = %s", (joiner.id,))

    assert admin.execute(count, (group["id"],)).fetchone() == (2,)
    # The group the account created goes with it by the foreign key's cascade; on a
    # Citus cluster, which keeps no keys to auth.users, it stays, with no members.
    assert admin.execute(count, (theirs["id"],)).fetchone() in (None, (0,))
    assert admin.execute("select count(*) from app.group_members where group_id = %s",
                         (group["id"],)).fetchone() == (2,)
    preview = client.post("/rest/v1/rpc/preview_group_invite", json={"code": invite["code"]},
                          headers=make_user().headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["group"]["member_count"] == 2
