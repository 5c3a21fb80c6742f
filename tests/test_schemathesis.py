"""Schemathesis drives the real gateway from /openapi.json as a signed-in user, over
every operation (positive data: what the document allows, boundaries included,
then chains along its links), and finds no 5xx, no status, content type or body
the document does not allow, and no operation that mostly refuses what its schema
allows (the "schema validation mismatch" warning: a rule the document misses)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import GatewayProcess, User, create_user
from gateway.http.openapi import SERVICE_ROLE_TAG

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")
MAX_EXAMPLES = 15  # per operation and phase (200 scenarios for the stateful phase, below)
# Ids come from the document's links (@link in the docblocks), not from values
# schemathesis harvests from answers or links it guesses from field names: those feed
# the caller's own id (me().id, every creator_id) to request_friend, accept_friend and
# remove_friend, which refuse "yourself" (400), a rule no schema of a uuid can state.
CONFIG = """\
[phases.examples.extra-data-sources]
responses = false

[phases.coverage.extra-data-sources]
responses = false

[phases.fuzzing.extra-data-sources]
responses = false

[phases.stateful.inference]
algorithms = []

[phases.stateful.generation]
max-examples = 200
"""


@pytest.fixture(scope="module")
def fuzz_user(database_url: str, gateway: GatewayProcess) -> User:
    """A signed-in user with a friend request waiting: list_friends names someone
    else, whom request_friend, accept_friend and remove_friend can be called with
    (every other id schemathesis has is unknown, or the caller's own: refused)."""
    user = create_user(database_url, "Fuzzer")
    friend = create_user(database_url, "Friend")
    asked = httpx.post(f"{gateway.url}/rest/v1/rpc/request_friend", json={"user_id": user.id},
                       headers=friend.headers)
    assert asked.status_code == 200, asked.text
    return user


def test_schemathesis_finds_no_failure_and_no_mismatch(
        gateway: GatewayProcess, fuzz_user: User, tmp_path: Path) -> None:
    """Operations only the service_role may call are left out (a user gets 403 from
    them, which says nothing about their arguments). One worker: schemathesis' own
    generation cache has failed now and then with two (a KeyError inside it)."""
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    service_only = [op["operationId"] for item in document["paths"].values()
                    for op in item.values() if SERVICE_ROLE_TAG in op.get("tags", [])]
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config),
         "run", f"{gateway.url}/openapi.json",
         "--header", f"Authorization: Bearer {fuzz_user.token}",
         "--checks", ",".join(CHECKS), "--mode", "positive",
         *(["--exclude-tag", SERVICE_ROLE_TAG] if service_only else []),
         "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--seed", "20261205",
         "--request-timeout", "10"],
        capture_output=True, text=True, timeout=600,
    )
    elapsed = time.monotonic() - started
    report = done.stdout
    # Failures and errors are reported above the summary: keep both in the message.
    first = min((i for i in (report.find("FAILURES"), report.find("ERRORS")) if i >= 0),
                default=-1)
    summary = (report[first:first + 6000] + "\n...\n" if first >= 0 else "") + report[-4000:]
    assert done.returncode == 0, summary
    operations = re.search(r"API Operations:\s+Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
    assert operations is not None, summary
    assert operations[1] == operations[3], summary  # every selected operation was tested
    cases = re.search(r"Test cases:\s+(\d+) generated, (\d+) passed", report)
    assert cases is not None and int(cases[1]) > 0, summary
    assert "failed" not in report.split("Test cases:")[-1].split("\n\n")[0], summary
    assert "validation mismatch" not in report.lower(), summary
    assert "Stateful" in report, summary  # the links were followed
    warnings = report[report.find("Warnings:"):report.find("Test cases:")].strip()
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", report)
    assert links is not None and int(links[1]) > 0, summary
    print(f"schemathesis: {cases[1]} cases in {elapsed:.0f} s, links {links[1]}/{links[2]} "
          f"covered\n{warnings}")
