"""A deadlock (40P01) or serialization failure (40001) is retried by the gateway's
database call -- the call is the whole transaction -- and answered 503 with
Retry-After once the tries are spent, never 500. On both ways into a call (the
fast path, and the Starlette application a request with an Origin takes) and in
both database modes (one simple-query script, prepared statements). A lock
waited for past LOCK_TIMEOUT_MS (55P03) is answered 503 with Retry-After too."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest

from gateway.db import TRIES

if TYPE_CHECKING:
    from conftest import GatewayProcess, User

# Fails with `sqlstate` while the sequence `tries` (which a rollback does not
# undo) is at most `fails`; then records one row, as a counted attempt would.
CONFLICT_FUNCTION = """
create table if not exists test_support.conflict_done (tries regclass, n bigint);
create or replace function api.test_conflict(tries text, fails integer, sqlstate text)
returns jsonb language plpgsql volatile security definer set search_path = '' as $$
declare
    v_n bigint := pg_catalog.nextval(test_conflict.tries::regclass);
begin
    if v_n <= test_conflict.fails then
        raise exception using errcode = test_conflict.sqlstate, message = 'conflict';
    end if;
    insert into test_support.conflict_done values (test_conflict.tries::regclass, v_n);
    return pg_catalog.jsonb_build_object('tries', v_n);
end;
$$;
revoke execute on function api.test_conflict(text, integer, text) from public;
grant execute on function api.test_conflict(text, integer, text) to authenticated;
"""


@pytest.fixture(scope="module")
def gateways(database_url: str, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[dict[str, GatewayProcess]]:
    from conftest import start_gateway, stop_gateway

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(CONFLICT_FUNCTION)
    folder: Path = tmp_path_factory.mktemp("retry")
    started = {
        "script": start_gateway(database_url, folder / "script.log"),
        "prepared": start_gateway(database_url, folder / "prepared.log",
                                  DB_PREPARED_STATEMENTS="on"),
    }
    yield started
    for gateway in started.values():
        stop_gateway(gateway)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("drop function if exists api.test_conflict(text, integer, text)")


WAYS = {"fast": {}, "application": {"Origin": "http://app.example"}}


def new_counter(admin: psycopg.Connection) -> str:
    name = f"test_support.tries_{uuid.uuid4().hex[:12]}"
    admin.execute(f"create sequence {name}")
    return name


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("mode", ["script", "prepared"])
def test_a_conflict_is_retried_and_its_writes_kept_once(
        gateways: dict[str, GatewayProcess], admin: psycopg.Connection,
        make_user: Callable[[], User], mode: str, way: str, sqlstate: str) -> None:
    user, counter = make_user(), new_counter(admin)
    response = httpx.post(f"{gateways[mode].url}/rest/v1/rpc/test_conflict",
                          json={"tries": counter, "fails": TRIES - 1, "sqlstate": sqlstate},
                          headers={**user.headers, **WAYS[way]}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"tries": TRIES}
    rows = admin.execute("select n from test_support.conflict_done where tries = %s::regclass",
                         (counter,)).fetchall()
    assert rows == [(TRIES,)]


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("mode", ["script", "prepared"])
def test_a_conflict_that_persists_is_503_with_retry_after(
        gateways: dict[str, GatewayProcess], admin: psycopg.Connection,
        make_user: Callable[[], User], mode: str, way: str) -> None:
    user, counter = make_user(), new_counter(admin)
    response = httpx.post(f"{gateways[mode].url}/rest/v1/rpc/test_conflict",
                          json={"tries": counter, "fails": 100, "sqlstate": "40P01"},
                          headers={**user.headers, **WAYS[way]}, timeout=30)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.json()["code"] == "40P01"
    assert admin.execute(f"select last_value from {counter}").fetchone() == (TRIES,)
    assert admin.execute("select count(*) from test_support.conflict_done "
                         "where tries = %s::regclass", (counter,)).fetchone() == (0,)
    # The connection is fine afterwards: the next call on it answers.
    again = httpx.post(f"{gateways[mode].url}/rest/v1/rpc/test_conflict",
                       json={"tries": counter, "fails": 0, "sqlstate": "40P01"},
                       headers={**user.headers, **WAYS[way]}, timeout=30)
    assert again.status_code == 200, again.text


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("mode", ["script", "prepared"])
def test_a_lock_held_past_lock_timeout_is_503_with_retry_after(
        gateways: dict[str, GatewayProcess], admin: psycopg.Connection,
        make_user: Callable[[], User], mode: str, way: str) -> None:
    """LOCK_TIMEOUT_MS (2000 by default) is set in each call's transaction: a call
    that waits longer for a row lock fails with 55P03, answered 503 with
    Retry-After (PostgREST's 500 for class 55 is not kept: it is an overload that
    passes), and nothing of it is kept."""
    url = gateways[mode].url
    user = make_user()
    headers = {**user.headers, **WAYS[way]}
    deadline = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    event = httpx.post(f"{url}/rest/v1/rpc/create_event", headers=headers, timeout=30, json={
        "title": "Lock wait", "registration_deadline": deadline, "capacity": 10})
    assert event.status_code == 200, event.text
    event_id = event.json()["id"]
    with admin.transaction():
        # Another transaction holds the event row (FOR UPDATE conflicts with every
        # lock the call may take on it, the KEY SHARE of a foreign key included).
        admin.execute("select 1 from app.events where id = %s for update", (event_id,))
        response = httpx.post(f"{url}/rest/v1/rpc/create_pair_invite", headers=headers,
                              json={"event_id": event_id}, timeout=30)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert response.json()["code"] == "55P03"
    assert admin.execute("select count(*) from app.pair_invites where event_id = %s",
                         (event_id,)).fetchone() == (0,)
    # Once the lock is released the same call goes through.
    again = httpx.post(f"{url}/rest/v1/rpc/create_pair_invite", headers=headers,
                       json={"event_id": event_id}, timeout=30)
    assert again.status_code == 200, again.text
