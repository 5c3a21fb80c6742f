"""The real `supabase` Python client against the gateway, unchanged: it must work as
it does against PostgREST on Supabase."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client

if TYPE_CHECKING:
    from conftest import GatewayProcess, User

# supabase-py itself passes these deprecated options to its PostgREST client.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The '(timeout|verify)' parameter is deprecated:DeprecationWarning")


def client_for(gateway: GatewayProcess, user: User) -> Client:
    # The key is the user's JWT: the client sends it as apikey and as Bearer token.
    return create_client(gateway.url, user.token,
                         options=ClientOptions(postgrest_client_timeout=30))


def test_create_invite_and_join(gateway, make_user, admin) -> None:
    owner, joiner = make_user(), make_user()
    owner_client, joiner_client = client_for(gateway, owner), client_for(gateway, joiner)

    group = owner_client.rpc("create_group", {"name": "Supabase fans"}).execute().data
    assert isinstance(group, dict)
    assert set(group) == {"id", "name", "creator_id", "created_at"}
    assert group["name"] == "Supabase fans"
    assert group["creator_id"] == owner.id

    invite = owner_client.rpc("create_group_invite", {"group_id": group["id"]}).execute().data
    assert set(invite) == {"id", "code", "group_id", "created_at", "expires_at", "max_uses"}
    assert invite["group_id"] == group["id"]
    assert invite["expires_at"] is None and invite["max_uses"] is None

    joined = joiner_client.rpc("join_group", {"code": invite["code"]}).execute().data
    assert set(joined) == {"group", "membership"}
    assert joined["group"] == {"id": group["id"], "name": "Supabase fans"}
    assert set(joined["membership"]) == {"user_id", "group_id", "role", "joined_at"}
    assert joined["membership"]["user_id"] == joiner.id
    assert joined["membership"]["group_id"] == group["id"]
    assert joined["membership"]["role"] == "member"

    row = admin.execute("select use_count from app.group_invites where id = %s",
                        (invite["id"],)).fetchone()
    assert row == (1,)

    # A stable function read with GET, as `rpc(..., get=True)` does.
    groups = joiner_client.rpc("my_groups", {}, get=True).execute().data
    assert [g["id"] for g in groups] == [group["id"]]
    members = joiner_client.rpc("group_members", {"group_id": group["id"]}, get=True).execute()
    assert {m["user_id"] for m in members.data} == {owner.id, joiner.id}

    # A void function answers 204; the client gives no data.
    revoked = owner_client.rpc("revoke_group_invite", {"code": invite["code"]}).execute()
    assert not revoked.data
    row = admin.execute("select revoked_at is not null from app.group_invites where id = %s",
                        (invite["id"],)).fetchone()
    assert row == (True,)


def test_join_with_unknown_code_raises_api_error(gateway, make_user) -> None:
    client = client_for(gateway, make_user())
    with pytest.raises(APIError) as caught:
        client.rpc("join_group", {"code": str(uuid.uuid4())}).execute()
    error = caught.value
    assert error.code == "PT404"
    assert error.message == "No invite with this code."
    assert error.details == "not_found"
    assert error.hint is None


def test_unknown_function_raises_api_error(gateway, make_user) -> None:
    client = client_for(gateway, make_user())
    with pytest.raises(APIError) as caught:
        client.rpc("no_such_function", {"x": 1}).execute()
    error = caught.value
    assert error.code == "PGRST202"
    assert error.message == (
        "Could not find the function api.no_such_function(x) in the schema cache")


def test_refused_invite_raises_api_error(gateway, make_user) -> None:
    owner, stranger = make_user(), make_user()
    group = client_for(gateway, owner).rpc("create_group", {"name": "Closed"}).execute().data
    with pytest.raises(APIError) as caught:
        client_for(gateway, stranger).rpc(
            "create_group_invite", {"group_id": group["id"], "max_uses": 2}).execute()
    assert caught.value.code == "PT403"
    assert caught.value.message == "Only members of the group can create invite codes."
