"""Every hot call reaches one shard per statement (issue 20, item 4).

Each call runs with `citus.multi_task_query_log_level = 'error'`: any statement
of the call, at any depth, that Citus would send to more than one shard raises
instead, and the test fails. Once as the gateway runs a call (one transaction,
role and claims set with set_config, the call) with the setting set for the
transaction, once through a gateway whose login role has the setting. Skipped unless
DATABASE_URL is a Citus coordinator (`make test-citus`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from citus_support import require_citus

from conftest import User, start_gateway, stop_gateway

HOT_CALLS = {
    "join_group", "create_group_invite", "create_pair_invite", "join_pair_invite",
    "accept_pair_invite", "decline_pair_invite", "register_for_event", "like_event",
    "approve_like_group", "reject_like_group", "get_like_group",
    "add_like_group_member", "remove_like_group_member",
}


@pytest.fixture(autouse=True)
def _citus(database_url: str) -> None:
    require_citus(database_url)


class Caller:
    """Calls api functions the gateway's way, strict (one shard per statement)
    or not (arranging what the strict calls need)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.strict_calls: set[str] = set()

    def __call__(self, user: User, function: str, strict: bool = True,
                 **args: Any) -> tuple[int, Any]:
        claims = json.dumps({"sub": user.id, "role": "authenticated", "email": user.email})
        names = ", ".join(f"{name} => %({name})s" for name in args)
        with psycopg.connect(self.url) as conn:
            if strict:
                conn.execute("set local citus.multi_task_query_log_level = 'error'")
            conn.execute("select set_config('role', 'authenticated', true), "
                         "set_config('request.jwt.claims', %s, true)", (claims,))
            row = conn.execute(f"select api.{function}({names})", args).fetchone()
            status = conn.execute("select current_setting('response.status', true)").fetchone()
            conn.commit()
        if strict:
            self.strict_calls.add(function)
        assert row is not None and status is not None
        return int(status[0] or 200), row[0]

    def ok(self, user: User, function: str, strict: bool = True, **args: Any) -> Any:
        status, result = self(user, function, strict, **args)
        assert status in (200, 201, 204), (function, status, result)
        return result


class HttpCaller(Caller):
    """The same calls through a gateway whose login role has the setting: every
    call is strict."""

    def __init__(self, client: httpx.Client) -> None:
        super().__init__("")
        self.client = client

    def __call__(self, user: User, function: str, strict: bool = True,
                 **args: Any) -> tuple[int, Any]:
        response = self.client.post(f"/rest/v1/rpc/{function}", json=args, headers=user.headers)
        self.strict_calls.add(function)
        assert response.status_code < 500, (function, response.text)
        return response.status_code, response.json() if response.content else None


def hot_calls(call: Caller, make_user: Callable[..., User]) -> None:
    """Each hot call at least once, on rows made for it."""
    owner, joiner, host, partner, other, friend = (make_user() for _ in range(6))

    # Group invite codes.
    group = call.ok(owner, "create_group", strict=False, name="Routed club")
    invite = call.ok(owner, "create_group_invite", group_id=group["id"], max_uses=5)
    joined = call.ok(joiner, "join_group", code=invite["code"])
    assert joined["membership"]["user_id"] == joiner.id
    again = call.ok(joiner, "join_group", code=invite["code"])  # already a member
    assert again["group"]["id"] == group["id"]
    status, refused = call(joiner, "join_group", code="7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b")
    assert (status, refused["details"]) == (404, "not_found")

    # Pair registration.
    event = call.ok(host, "create_event", strict=False, title="Routed race", capacity=10)
    sent = call.ok(owner, "create_pair_invite", event_id=event["id"])
    answer = call.ok(partner, "join_pair_invite", code=sent["short_code"])
    accepted = call.ok(partner, "accept_pair_invite", token=answer["token"])
    assert {r["user_id"] for r in accepted["registrations"]} == {owner.id, partner.id}
    sent = call.ok(other, "create_pair_invite", event_id=event["id"])
    answer = call.ok(friend, "join_pair_invite", code=sent["short_code"])
    call.ok(friend, "decline_pair_invite", token=answer["token"])
    status, refused = call(friend, "join_pair_invite", code="ZZZZ-ZZZZ")
    assert status == 404
    call.ok(host, "register_for_event", strict=False, event_id=event["id"])  # authors may
    call.ok(other, "register_for_event", event_id=event["id"])

    # Like groups.
    for a, b in ((owner, joiner), (owner, friend), (other, friend)):
        call.ok(a, "request_friend", strict=False, user_id=b.id)
        call.ok(b, "accept_friend", strict=False, user_id=a.id)
    party = call.ok(host, "create_event", strict=False, title="Routed party")
    liked = call.ok(owner, "like_event", event_id=party["id"], member_ids=[joiner.id])
    assert liked["status"] == "pending"
    seen = call.ok(joiner, "get_like_group", group_id=liked["id"])
    assert seen["member_ids"] == [owner.id, joiner.id]
    added = call.ok(owner, "add_like_group_member", group_id=liked["id"], user_id=friend.id)
    assert added["member_ids"] == [owner.id, joiner.id, friend.id]
    call.ok(owner, "remove_like_group_member", group_id=liked["id"], user_id=friend.id)
    approved = call.ok(host, "approve_like_group", group_id=liked["id"])
    assert approved["status"] == "approved" and approved["chat_id"] is not None
    other_like = call.ok(other, "like_event", event_id=party["id"], member_ids=[friend.id])
    rejected = call.ok(host, "reject_like_group", group_id=other_like["id"])
    assert rejected["status"] == "rejected"

    assert call.strict_calls >= HOT_CALLS, HOT_CALLS - call.strict_calls


def test_every_hot_call_reaches_one_shard_per_statement(
        database_url: str, make_user: Callable[..., User]) -> None:
    hot_calls(Caller(database_url), make_user)


def test_through_a_gateway_whose_role_has_the_setting(
        database_url: str, admin: psycopg.Connection, make_user: Callable[..., User],
        tmp_path: Path) -> None:
    """The setting on the gateway's login role (`alter role authenticator set`),
    a gateway started after it: the calls as the gateway sends them, its
    wrapper included, each statement on one shard; a listing across every
    shard is refused there (the setting did apply)."""
    admin.execute("alter role authenticator set citus.multi_task_query_log_level = 'error'")
    gateway = None
    try:
        gateway = start_gateway(database_url, tmp_path / "gateway.log")
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            hot_calls(HttpCaller(client), make_user)
            user = make_user()
            listing = client.post("/rest/v1/rpc/my_like_groups", json={}, headers=user.headers)
            assert listing.status_code == 500, listing.text
            assert "multi-task query" in listing.json()["message"]
    finally:
        admin.execute("alter role authenticator reset citus.multi_task_query_log_level")
        if gateway is not None:
            stop_gateway(gateway)


def test_a_multi_shard_statement_does_fail_here(
        database_url: str, make_user: Callable[..., User]) -> None:
    """The setting does what the test above relies on: a listing across every
    shard fails under it."""
    call = Caller(database_url)
    user = make_user()
    with pytest.raises(psycopg.Error, match="multi-task query"):
        call(user, "my_like_groups")
