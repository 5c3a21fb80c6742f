"""One worker stopped (issue 20, item 5): calls whose rows all live on the other
worker keep answering; calls that need the stopped one get 503 with Retry-After
(no hang: the client's timeout bounds each request); all resume when it is back.
Skipped unless DATABASE_URL is a Citus coordinator started by
scripts/citus-cluster (`make test-citus`), which gives each worker a `ctl`."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from citus_support import require_citus, worker_urls
from psycopg.conninfo import conninfo_to_dict

from conftest import User

# Each request must come back well within this (connection refused is at once;
# an unreachable worker within citus.node_connection_timeout, 5 s): a request
# that hangs fails the test with a timeout instead of passing late.
REQUEST_TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def _citus(database_url: str) -> None:
    require_citus(database_url)
    if len(os.environ.get("CITUS_WORKER_CTLS", "").split()) < 2:
        pytest.skip("no worker control scripts (scripts/citus-cluster sets CITUS_WORKER_CTLS)")


def node_of(admin: psycopg.Connection, table: str, value: Any, cast: str = "uuid") -> int:
    """The port of the worker holding `value`'s shard of `table`."""
    row = admin.execute(
        "select nodeport from pg_dist_shard_placement where shardid = "
        f"get_shard_id_for_distribution_column(%s, %s::{cast})", (table, value)).fetchone()
    assert row is not None
    return int(row[0])


def post(client: httpx.Client, path: str, user: User, **body: Any) -> httpx.Response:
    return client.post(path, json=body, headers=user.headers, timeout=REQUEST_TIMEOUT)


def created(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


class Worker:
    """The second worker, stopped and started by its `ctl`; started again after
    the test in any case."""

    def __init__(self) -> None:
        self.ctl = os.environ["CITUS_WORKER_CTLS"].split()[1]
        self.port = int(conninfo_to_dict(worker_urls()[1])["port"])
        self.stopped = False

    def stop(self) -> None:
        subprocess.run([self.ctl, "stop"], check=True, capture_output=True, timeout=120)
        self.stopped = True

    def start(self) -> None:
        subprocess.run([self.ctl, "start"], check=True, capture_output=True, timeout=120)
        self.stopped = False


@pytest.fixture
def second_worker() -> Iterator[Worker]:
    worker = Worker()
    yield worker
    if worker.stopped:
        worker.start()


def test_one_worker_down(admin: psycopg.Connection, client: httpx.Client,
                         make_user: Callable[..., User], second_worker: Worker) -> None:
    down = second_worker.port
    up = int(conninfo_to_dict(worker_urls()[0])["port"])
    host = make_user()

    # Arranged while both workers run: for each worker, a user whose own rows
    # (rate-limit counters, audit) live there, an event, a group and an invite code
    # of that group whose route lives there too.
    def on(port: int, make: Callable[[], Any], where: Callable[[Any], list[tuple[str, Any, str]]]
           ) -> Any:
        for _ in range(60):
            made = make()
            if all(node_of(admin, t, v, c) == port for t, v, c in where(made)):
                return made
        raise AssertionError(f"nothing placed on {port} in 60 tries")

    placed: dict[int, dict[str, Any]] = {}
    for port in (up, down):
        user = on(port, make_user, lambda u: [("app.rate_limit_counters", u.id, "uuid")])
        event = on(port, lambda: created(post(client, "/rest/v1/rpc/create_event", host,
                                              title="Down", capacity=10)),
                   lambda e: [("app.events", e["id"], "uuid")])
        group = on(port, lambda: created(post(client, "/rest/v1/rpc/create_group", host,
                                              name="Down")),
                   lambda g: [("app.groups", g["id"], "uuid")])
        invite = on(port, lambda g=group: created(post(
                        client, "/rest/v1/rpc/create_group_invite", host,
                        group_id=g["id"]))["code"],
                    lambda code: [("app.group_invite_routes",
                                   "\\x" + hashlib.sha256(code.encode()).hexdigest(), "bytea")])
        placed[port] = {"user": user, "event": event, "code": invite}

    second_worker.stop()
    live, gone = placed[up], placed[down]
    # On the running worker: registrations, events, joins by code go on.
    response = post(client, "/rest/v1/rpc/register_for_event", live["user"],
                    event_id=live["event"]["id"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "confirmed"
    response = post(client, "/api/groups/join", live["user"], code=live["code"])
    assert response.status_code == 200, response.text
    response = client.get("/rest/v1/rpc/get_event", params={"event_id": live["event"]["id"]},
                          headers=live["user"].headers, timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200, response.text
    response = post(client, "/rest/v1/rpc/cancel_registration", live["user"],
                    event_id=live["event"]["id"])
    assert response.status_code == 204, response.text

    # What needs the stopped worker: 503 with Retry-After, at once.
    needing = [
        ("/rest/v1/rpc/register_for_event", live["user"], {"event_id": gone["event"]["id"]}),
        ("/api/groups/join", live["user"], {"code": gone["code"]}),
        ("/api/groups/join", gone["user"], {"code": live["code"]}),  # the user's own rows
    ]
    for path, user, body in needing:
        response = post(client, path, user, **body)
        assert response.status_code == 503, (path, response.text)
        assert response.headers["Retry-After"].isdigit(), path
        assert response.json()["code"] == "08006", response.text

    # Back: everything answers again (a first call may still meet a connection
    # the stop broke, and get 503 again).
    second_worker.start()
    for path, user, body in needing:
        statuses = []
        for _ in range(40):
            statuses.append(post(client, path, user, **body).status_code)
            if statuses[-1] != 503:
                break
            time.sleep(0.5)
        assert statuses[-1] == 200, (path, statuses)
