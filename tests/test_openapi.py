"""/openapi.json describes every route and RPC function, and schemathesis, driving
the real gateway from that document, finds no 5xx and no answer that breaks it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import GatewayProcess, User, create_user
from gateway.http.routes import SEED_ROUTES


@pytest.fixture(scope="module")
def fuzz_user(database_url: str) -> User:
    return create_user(database_url, "Fuzzer")


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
        "memberIds": {"type": "array", "items": {"type": "string", "format": "uuid"}}}
    assert invite["post"]["summary"].startswith("Creates an invite code")


def test_schemathesis_finds_no_server_error_and_no_broken_answer(
        gateway: GatewayProcess, fuzz_user: User) -> None:
    """Every operation, examples generated from the document (coverage, fuzzing and
    stateful phases); the run fails on any 5xx or any status, content type or body
    the document does not allow. One worker: schemathesis' own generation cache
    has failed now and then with two (a KeyError inside schemathesis)."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{gateway.url}/openapi.json",
         "--header", f"Authorization: Bearer {fuzz_user.token}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--max-examples", "15", "--workers", "1", "--seed", "20261122",
         "--request-timeout", "10"],
        capture_output=True, text=True, timeout=600,
    )
    # Failures and errors are reported above the summary: keep both in the message.
    report = done.stdout
    first = min((i for i in (report.find("FAILURES"), report.find("ERRORS")) if i >= 0),
                default=-1)
    summary = (report[first:first + 6000] + "\n...\n" if first >= 0 else "") + report[-3000:]
    assert done.returncode == 0, summary
    assert re.search(r"\d+ generated, \d+ passed", summary), summary
    assert "failed" not in summary.split("Test cases:")[-1], summary
