"""The answers of a whole flow (groups and codes, friends, an event liked and
approved, a pair invite accepted) match the response schemas /openapi.json gives
them (the docblocks' @returns): every field named is there, with its type. The
Schemathesis run mostly meets unknown ids; this meets real rows."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest

from conftest import GatewayProcess, User, create_user


@pytest.fixture(scope="module")
def schemas(gateway: GatewayProcess) -> dict[str, Any]:
    paths = httpx.get(f"{gateway.url}/openapi.json").json()["paths"]
    out = {}
    for path, item in paths.items():
        if path.startswith("/rest/v1/rpc/"):
            answer = item["post"]["responses"].get("200")
            if answer is not None:
                out[path.removeprefix("/rest/v1/rpc/")] = answer["content"][
                    "application/json"]["schema"]
    return out


class Caller:
    def __init__(self, gateway: GatewayProcess, schemas: dict[str, Any]) -> None:
        self.url = f"{gateway.url}/rest/v1/rpc"
        self.schemas = schemas
        self.checked: set[str] = set()

    def __call__(self, user: User, function: str, /, **args: Any) -> Any:
        name = function
        answer = httpx.post(f"{self.url}/{name}", json=args, headers=user.headers)
        assert answer.status_code == 200, (name, answer.text)
        body = answer.json()
        schema = self.schemas[name]
        assert schema != {}, f"{name} has no @returns"
        validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
        errors = [str(e) for e in validator.iter_errors(body)]
        assert errors == [], (name, body, errors)
        self.checked.add(name)
        return body


def test_answers_of_a_whole_flow_match_their_schemas(
        gateway: GatewayProcess, schemas: dict[str, Any], database_url: str) -> None:
    call = Caller(gateway, schemas)
    ana, bo, cai = (create_user(database_url, n) for n in ("Ana", "Bo", "Cai"))
    call(ana, "me")
    call(ana, "update_profile", locale="ca")
    # Friends.
    call(ana, "request_friend", user_id=bo.id)
    call(bo, "list_friends")
    call(bo, "accept_friend", user_id=ana.id)
    # A group, a code, a join.
    group = call(ana, "create_group", name="Climbers")
    invite = call(ana, "create_group_invite", group_id=group["id"], max_uses=5, expires_in=600)
    call(bo, "preview_group_invite", code=invite["code"])
    call(bo, "join_group", code=invite["code"])
    call(bo, "my_groups")
    call(ana, "group_members", group_id=group["id"])
    # An event, a like group with a friend, approval, chat and notifications.
    event = call(cai, "create_event", title="Spring open", capacity=8,
                 starts_at="2030-05-01T10:00:00Z")
    call(ana, "get_event", event_id=event["id"])
    call(cai, "add_event_author", event_id=event["id"], user_id=bo.id)
    call(cai, "remove_event_author", event_id=event["id"], user_id=bo.id)
    like = call(ana, "like_event", event_id=event["id"], member_ids=[bo.id])
    call(bo, "get_like_group", group_id=like["id"])
    call(cai, "event_like_groups", event_id=event["id"])
    approved = call(cai, "approve_like_group", group_id=like["id"])
    assert approved["status"] == "approved" and approved["chat_id"] is not None
    call(ana, "list_like_group_approvals", group_id=like["id"])
    call(ana, "my_chats")
    call(bo, "my_notifications")
    call(bo, "mark_notifications_read")
    assert call(ana, "can_subscribe", topic=f"group:{like['id']}") is True
    # A pair invite, by code, accepted; another by email, resent and revoked.
    pairs = call(cai, "create_event", title="Pairs cup", capacity=4)
    pair = call(ana, "create_pair_invite", event_id=pairs["id"])
    call(bo, "preview_pair_invite", code=pair["short_code"].lower())
    joined = call(bo, "join_pair_invite", code=pair["short_code"])
    call(bo, "accept_pair_invite", token=joined["token"])
    call(ana, "my_pair_invites")
    mailed = call(cai, "create_pair_invite", event_id=pairs["id"], invitee_email=bo.email)
    call(cai, "resend_pair_invite", invite_id=mailed["id"])
    call(cai, "revoke_pair_invite", invite_id=mailed["id"])
    alone = call(cai, "create_event", title="Solo run")
    call(cai, "register_for_event", event_id=alone["id"])
    # Every function whose document names its answer's fields was met here.
    named = {name for name, schema in schemas.items() if schema != {}}
    assert named - call.checked <= {"reject_like_group", "add_like_group_member",
                                    "remove_like_group_member", "decline_pair_invite"}, \
        named - call.checked
