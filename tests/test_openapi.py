"""/openapi.json describes every route and RPC function with the rules the functions
enforce (tests/test_schemathesis.py drives the real gateway from it)."""

from __future__ import annotations

import re

import httpx
import psycopg
import pytest

from conftest import GatewayProcess, create_user
from gateway.db import DOMAINS_QUERY, Catalog, Function
from gateway.http.openapi import AnnotationError, annotations, document, type_schema
from gateway.http.routes import SEED_ROUTES


@pytest.fixture(scope="module")
def openapi_document(gateway: GatewayProcess) -> dict:
    answer = httpx.get(f"{gateway.url}/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def test_document_lists_every_function_and_route(openapi_document: dict, admin) -> None:
    assert openapi_document["openapi"] == "3.1.0"
    paths = openapi_document["paths"]
    functions = {name for (name,) in admin.execute(
        "select proname from pg_proc where pronamespace = 'api'::regnamespace").fetchall()}
    assert {p.removeprefix("/rest/v1/rpc/") for p in paths if p.startswith("/rest/v1/rpc/")} \
        == functions
    for route in SEED_ROUTES:
        assert route.method.lower() in paths[route.path], route.path
    assert {"/healthz", "/realtime/v1/sse"} <= set(paths)


def test_document_describes_arguments_truly(openapi_document: dict) -> None:
    invite = openapi_document["paths"]["/rest/v1/rpc/create_group_invite"]
    schema = invite["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["group_id"]
    assert schema["properties"]["group_id"] == {"type": "string", "format": "uuid"}
    assert schema["properties"]["max_uses"]["type"] == "integer"
    assert "get" not in invite  # volatile: POST only, as PostgREST
    assert "get" in openapi_document["paths"]["/rest/v1/rpc/my_groups"]
    assert "204" in openapi_document["paths"]["/rest/v1/rpc/leave_group"]["post"]["responses"]
    like = openapi_document["paths"]["/events/{id}/like"]["post"]
    assert like["requestBody"]["content"]["application/json"]["schema"]["properties"] == {
        "memberIds": {"type": "array", "items": {"type": "string", "format": "uuid"},
                      "maxItems": 9}}
    assert invite["post"]["summary"].startswith("Creates an invite code")


def body_schema(document: dict, name: str) -> dict:
    post = document["paths"][f"/rest/v1/rpc/{name}"]["post"]
    return post["requestBody"]["content"]["application/json"]["schema"]


def answer(document: dict, name: str, status: str = "200") -> dict:
    return document["paths"][f"/rest/v1/rpc/{name}"]["post"]["responses"][status]


def test_arguments_carry_the_rules_the_functions_enforce(openapi_document: dict) -> None:
    props = {name: body_schema(openapi_document, name)["properties"]
             for name in ("join_group", "create_group_invite", "like_event", "update_profile",
                          "create_group", "create_event", "join_pair_invite",
                          "accept_pair_invite", "create_pair_invite")}
    assert props["join_group"]["code"] == {
        "type": "string",
        "pattern": "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"}
    assert props["create_group_invite"]["expires_in"] == {
        "type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    assert props["create_group_invite"]["max_uses"] == {
        "type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    assert props["like_event"]["member_ids"] == {
        "type": "array", "items": {"type": "string", "format": "uuid"}, "maxItems": 9}
    assert props["update_profile"]["locale"] == {"type": "string", "enum": ["en", "ca"]}
    assert body_schema(openapi_document, "update_profile")["minProperties"] == 1
    assert (props["create_group"]["name"]["minLength"],
            props["create_group"]["name"]["maxLength"]) == (1, 100)
    assert props["update_profile"]["display_name"]["maxLength"] == 80
    assert props["create_event"]["title"]["maxLength"] == 200
    assert props["create_event"]["capacity"]["minimum"] == 1
    assert props["create_event"]["starts_at"] == {"type": "string", "format": "date-time"}
    assert props["join_pair_invite"]["code"]["pattern"] == \
        "^[\\s-]*([2-9A-HJKMNP-Za-hjkmnp-z][\\s-]*){8}$"
    assert props["accept_pair_invite"]["token"]["pattern"] == "^[A-Za-z0-9_-]{43}$"
    assert props["create_pair_invite"]["invitee_email"]["maxLength"] == 254
    # A GET (stable function) carries the same rules in its query parameters.
    get = openapi_document["paths"]["/rest/v1/rpc/can_subscribe"]["get"]
    assert get["parameters"][0]["schema"]["pattern"] == "^(user|group|event):[0-9A-Fa-f-]{36}$"
    # The seed routes take the same rules under their own names.
    seed_join = openapi_document["paths"]["/api/groups/join"]["post"]
    assert seed_join["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "code"] == props["join_group"]["code"]


def test_patterns_match_what_the_functions_accept(openapi_document: dict) -> None:
    code = body_schema(openapi_document, "join_group")["properties"]["code"]["pattern"]
    assert re.match(code, "7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b")
    assert not re.match(code, "7f1c2a9e3b4d4e5f8a6b1c2d3e4f5a6b")
    short = body_schema(openapi_document, "join_pair_invite")["properties"]["code"]["pattern"]
    assert re.match(short, "ABCD2345") and re.match(short, "abcd-2345")
    assert not re.match(short, "ABCD0345") and not re.match(short, "ABCD234")
    email = body_schema(openapi_document, "create_pair_invite")["properties"][
        "invitee_email"]["pattern"]
    assert re.match(email, "ana.pons+x@example.cat")
    for bad in ("a@b", "a,b@example.com", "<a@example.com>", "a..b@example.com",
                "x" * 65 + "@example.com"):
        assert not re.match(email, bad), bad


def test_answers_name_their_fields(openapi_document: dict) -> None:
    group = answer(openapi_document, "create_group")["content"]["application/json"]["schema"]
    assert group == {"type": "object", "required": ["id", "name", "creator_id", "created_at"],
                     "properties": {"id": {"type": "string", "format": "uuid"},
                                    "name": {"type": "string"},
                                    "creator_id": {"type": "string", "format": "uuid"},
                                    "created_at": {"type": "string", "format": "date-time"}}}
    like = answer(openapi_document, "like_event")["content"]["application/json"]["schema"]
    assert like["properties"]["status"] == {
        "type": "string", "enum": ["pending", "approved", "rejected"]}
    assert like["properties"]["chat_id"] == {"type": ["string", "null"], "format": "uuid"}
    joined = answer(openapi_document, "join_group")["content"]["application/json"]["schema"]
    assert joined["properties"]["membership"]["properties"]["role"]["enum"] == ["owner", "member"]
    assert answer(openapi_document, "can_subscribe")["content"]["application/json"][
        "schema"] == {"type": "boolean"}


def test_statuses_are_listed_and_429_only_where_limited(openapi_document: dict) -> None:
    join = openapi_document["paths"]["/rest/v1/rpc/join_group"]["post"]["responses"]
    assert set(join) == {"200", "400", "401", "403", "404", "406", "409", "410", "413", "415",
                         "429", "503"}
    assert "Retry-After" in join["429"]["headers"]
    assert "429" not in openapi_document["paths"]["/rest/v1/rpc/create_group"]["post"][
        "responses"]
    assert "429" in openapi_document["paths"]["/api/groups/join"]["post"]["responses"]
    # Counted through a private helper that calls private.rate_limited.
    for name in ("accept_pair_invite", "decline_pair_invite", "join_pair_invite",
                 "preview_pair_invite"):
        assert "429" in openapi_document["paths"][f"/rest/v1/rpc/{name}"]["post"][
            "responses"], name


EXPECTED_LINKS = {
    "create_group": {"create_group_invite", "group_members", "list_group_invites",
                     "leave_group"},
    "create_group_invite": {"join_group", "preview_group_invite", "revoke_group_invite"},
    "create_event": {"like_event", "create_pair_invite", "get_event", "register_for_event",
                     "add_event_author", "event_like_groups"},
    "like_event": {"get_like_group", "approve_like_group", "reject_like_group",
                   "add_like_group_member", "remove_like_group_member",
                   "list_like_group_approvals"},
    "create_pair_invite": {"join_pair_invite", "preview_pair_invite", "revoke_pair_invite",
                           "resend_pair_invite", "answer_pair_invite"},
    "join_pair_invite": {"accept_pair_invite", "decline_pair_invite"},
}


def test_links_chain_create_calls_to_their_users(openapi_document: dict) -> None:
    paths = openapi_document["paths"]
    operation_ids = {op["operationId"] for item in paths.values() for op in item.values()}
    found: dict[str, set[str]] = {}
    for path, item in paths.items():
        for op in item.values():
            for response in op["responses"].values():
                for name, link in response.get("links", {}).items():
                    assert link["operationId"] in operation_ids, (path, name)
                    target = body_schema(openapi_document, name)["properties"]
                    assert set(link["requestBody"]) <= set(target), (path, name)
                    found.setdefault(path.removeprefix("/rest/v1/rpc/"), set()).add(name)
    for source, targets in EXPECTED_LINKS.items():
        assert targets <= found[source], source
    link = answer(openapi_document, "create_group_invite")["links"]["join_group"]
    assert link == {"operationId": "rpc_join_group",
                    "requestBody": {"code": "$response.body#/code"}}
    nested = answer(openapi_document, "join_group")["links"]["group_members"]
    assert nested["requestBody"] == {"group_id": "$response.body#/group/id"}


def test_annotation_syntax() -> None:
    notes = annotations(
        "Does a thing.\nMore prose.\n@arg n minLength=1 maxLength=5 pattern=^a+$\n"
        "@arg kind enum=a,b\n@body minProperties=1\n"
        "@returns [{id:uuid, tags:[string], at:date-time?, mood:x|y?, any}]\n"
        "@link other n=id")
    assert notes.description == "Does a thing.\nMore prose."
    assert notes.args == {"n": {"minLength": 1, "maxLength": 5, "pattern": "^a+$"},
                          "kind": {"enum": ["a", "b"]}}
    assert notes.body == {"minProperties": 1}
    assert notes.returns == {"type": "array", "items": {
        "type": "object", "required": ["id", "tags", "at", "mood", "any"], "properties": {
            "id": {"type": "string", "format": "uuid"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "at": {"type": ["string", "null"], "format": "date-time"},
            "mood": {"type": ["string", "null"], "enum": ["x", "y", None]},
            "any": {}}}}
    assert notes.links == {"other": {"n": "id"}}
    for bad in ("@arg n minLength=x", "@arg n size=3", "@returns {id:uuidd}", "@returns {id",
                "@body minProperties"):
        with pytest.raises(AnnotationError):
            annotations(bad)


def test_whole_floats_are_integers(gateway: GatewayProcess, database_url: str) -> None:
    """JSON Schema counts 3.0 as an integer, so the document allows it for max_uses:
    the gateway passes it as 3 (json_to_record alone refuses "3.0"); 2.5 stays 400."""
    user = create_user(database_url)
    url = f"{gateway.url}/rest/v1/rpc"
    group = httpx.post(f"{url}/create_group", json={"name": "Floats"}, headers=user.headers)
    assert group.status_code == 200, group.text
    invite = httpx.post(f"{url}/create_group_invite", headers=user.headers,
                        json={"group_id": group.json()["id"], "max_uses": 3.0})
    assert invite.status_code == 200, invite.text
    assert invite.json()["max_uses"] == 3
    half = httpx.post(f"{url}/create_group_invite", headers=user.headers,
                      json={"group_id": group.json()["id"], "max_uses": 2.5})
    assert half.status_code == 400, half.text


def test_domains_state_their_checks(database_url: str) -> None:
    """An argument typed by a domain carries the domain's CHECK constraints, read from
    the catalogue (domains made in a transaction that is rolled back)."""
    with psycopg.connect(database_url) as conn:
        conn.execute("""
            create domain public.test_name as text
                check (char_length(value) between 1 and 100) check (value ~ '^[a-z'']+$');
            create domain public.test_locale as text check (value in ('en', 'ca'));
            create domain public.test_seats as integer check (value > 0) check (value <= 9);
            create domain public.test_either as integer check (value < 0 or value > 10);
            create domain public.test_short as varchar(12);
        """)
        domains = {name: (base, tuple(checks))
                   for name, base, checks in conn.execute(DOMAINS_QUERY).fetchall()}
        conn.rollback()
    assert type_schema("test_name", domains) == {
        "type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[a-z']+$"}
    assert type_schema("test_locale", domains) == {"type": "string", "enum": ["en", "ca"]}
    assert type_schema("test_seats", domains) == {"type": "integer", "minimum": 1, "maximum": 9}
    assert type_schema("test_seats[]", domains) == {
        "type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9}}
    assert type_schema("test_either", domains) == INT32_SCHEMA  # OR: not one keyword
    assert type_schema("test_short", domains) == {"type": "string", "maxLength": 12}


INT32_SCHEMA = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}


def test_service_role_operations_are_marked() -> None:
    """A function the authenticated role may not execute (the catalogue's
    has_function_privilege) is tagged service_role and asks for that scheme; one whose
    body calls private.rate_limited lists 429."""
    fn = Function("sweep", True, False, False, ("batch",), ("integer",), frozenset({"batch"}),
                  "Sweeps.\nFor workers.\n@arg batch minimum=1 maximum=500", "", "")
    catalog = Catalog()
    catalog.functions = {"sweep": [fn]}
    catalog.service_only = frozenset({"sweep"})
    catalog.limited = frozenset({"sweep"})
    post = document(catalog)["paths"]["/rest/v1/rpc/sweep"]["post"]
    assert post["tags"] == ["rpc", "service_role"]
    assert post["security"] == [{"service_role": []}]
    assert post["description"].startswith("Only the service_role may call this")
    assert post["description"].endswith("For workers.")
    assert "429" in post["responses"] and "403" in post["responses"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["properties"] == {
        "batch": {"type": "integer", "minimum": 1, "maximum": 500}}


def test_every_docblock_annotation_reads(admin) -> None:
    """A docblock whose annotations cannot be read would lose its function's rules
    (the document still serves): none may be so."""
    comments = admin.execute(
        "select p.proname, coalesce(obj_description(p.oid, 'pg_proc'), '') from pg_proc p "
        "where p.pronamespace = 'api'::regnamespace").fetchall()
    assert comments
    for name, comment in comments:
        try:
            annotations(comment)
        except AnnotationError as exc:
            pytest.fail(f"api.{name}: {exc}")


def test_an_unreadable_docblock_costs_only_its_function() -> None:
    fn = Function("odd", True, False, False, ("x",), ("integer",), frozenset({"x"}),
                  "Odd.\n@arg x minimum=one", "", "")
    catalog = Catalog()
    catalog.functions = {"odd": [fn]}
    post = document(catalog)["paths"]["/rest/v1/rpc/odd"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["properties"] == {
        "x": INT32_SCHEMA}
