"""The real `supabase` Python client against the gateway, unchanged: it must work as
it does against PostgREST on Supabase."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client

from conftest import JWT_SECRET
from gateway.jwt_auth import mint

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
    assert caught.value.code == "42501"
    assert caught.value.message == "Only members of the group can create invite codes."


def test_void_functions_and_anon_key(gateway, make_user) -> None:
    user = make_user()
    client = client_for(gateway, user)
    group = client.rpc("create_group", {"name": "Void"}).execute().data
    left = client.rpc("leave_group", {"group_id": group["id"]}).execute()
    assert left.data in (None, [], "")  # 204: postgrest-py reports no data
    assert client.rpc("my_groups", {}).execute().data == []
    anon = create_client(gateway.url, mint(JWT_SECRET, None, "anon"),
                         options=ClientOptions(postgrest_client_timeout=30))
    with pytest.raises(APIError) as refused:
        anon.rpc("my_groups", {}).execute()
    assert refused.value.code == "42501"


@pytest.fixture
def set_returning_function(admin) -> Iterator[str]:
    """A SETOF function in api for the length of one test (the project's own
    functions return JSON arrays; PostgREST clients also call set-returning ones)."""
    admin.execute("""
        create function api.test_numbers(upto integer)
        returns table (n integer, square integer)
        language sql stable security definer set search_path = '' as $$
            select i, i * i from pg_catalog.generate_series(1, upto) i
        $$;
        revoke execute on function api.test_numbers(integer) from public;
        grant execute on function api.test_numbers(integer) to authenticated;
        notify joinery_schema""")
    yield "test_numbers"
    admin.execute("drop function api.test_numbers(integer)")


def test_set_returning_function(gateway, make_user, set_returning_function: str) -> None:
    client = client_for(gateway, make_user())
    # The announcement reaches the gateway's listener within moments.
    deadline = time.monotonic() + 5
    while True:
        try:
            rows = client.rpc(set_returning_function, {"upto": 3}).execute().data
            break
        except APIError as exc:
            if exc.code != "PGRST202" or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert rows == [{"n": 1, "square": 1}, {"n": 2, "square": 4}, {"n": 3, "square": 9}]
    assert client.rpc(set_returning_function, {"upto": 0}).execute().data == []
    # GET too: the function is stable.
    rows = client.rpc(set_returning_function, {"upto": 2}, get=True).execute().data
    assert rows == [{"n": 1, "square": 1}, {"n": 2, "square": 4}]
