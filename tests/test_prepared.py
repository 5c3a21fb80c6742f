"""DB_PREPARED_STATEMENTS=on: the setup and each called function kept prepared per
connection, sent as one pipeline; one implicit transaction per call, nothing left
behind on the connection. (The suite's shared gateway runs in this mode too, so
every HTTP test exercises it; the run through PgBouncer uses the default.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from conftest import ROOT, GatewayProcess, start_gateway, stop_gateway
from gateway import db
from gateway.breaker import Breaker
from gateway.settings import authenticator_url


async def _call(conn: psycopg.AsyncConnection[Any], catalog: db.Catalog, name: str,
                args: dict[str, Any], claims: dict[str, Any], read_only: bool = False
                ) -> tuple[Any, ...] | None:
    fn = next(f for f in catalog.functions[name] if f.accepts(set(args)))
    values: tuple[Any, ...] = (claims["role"], json.dumps(claims), "POST",
                               f"/rest/v1/rpc/{name}", "{}", "127.0.0.1", "8000", "2000")
    if fn.arg_names:
        values += (json.dumps(args),)
    return await db.prepared_call(conn, fn, values, read_only)


def test_statements_are_prepared_once_per_connection(database_url: str, make_user,
                                                     admin: psycopg.Connection) -> None:
    user = make_user("Prepared Person")
    claims = {"sub": user.id, "role": "authenticated"}

    async def scenario() -> dict[str, Any]:
        url = authenticator_url(database_url)
        pool = db.make_pool(url, 1, 1, 5, Breaker(url, 1.0), prepared=True)
        await pool.open(wait=True)
        catalog = db.Catalog()
        await catalog.load(pool)
        out: dict[str, Any] = {}
        try:
            async with pool.connection() as conn:
                async def prepared() -> list[str]:
                    cur = await conn.execute(
                        "select statement from pg_prepared_statements order by prepare_time")
                    return [r[0] for r in await cur.fetchall()]

                out["me"] = [await _call(conn, catalog, "me", {}, claims) for _ in range(3)]
                out["groups"] = await _call(conn, catalog, "my_groups", {}, claims,
                                            read_only=True)
                out["prepared_first"] = await prepared()
                # Calls that raise: each implicit transaction rolls back at the Sync,
                # and no statement is left behind however many fail.
                errors = set()
                for _ in range(20):
                    with pytest.raises(psycopg.errors.Error) as raised:
                        await _call(conn, catalog, "create_group", {"name": ""}, claims)
                    errors.add(raised.value.sqlstate)
                out["errors"] = errors
                out["prepared_after_errors"] = await prepared()
                # The read-only setup (a GET): a write fails, as under `begin read only`.
                with pytest.raises(psycopg.errors.Error) as refused:
                    await _call(conn, catalog, "create_group", {"name": "Never"}, claims,
                                read_only=True)
                out["read_only_error"] = refused.value.sqlstate
                out["status"] = conn.info.transaction_status
                out["after"] = [await _call(conn, catalog, "me", {}, claims) for _ in range(3)]
                out["prepared"] = await prepared()
                cur = await conn.execute(
                    "select current_user, current_setting('request.jwt.claims', true), "
                    "current_setting('statement_timeout'), "
                    "current_setting('transaction_read_only')")
                out["left"] = await cur.fetchone()
        finally:
            await pool.breaker.stop()
            await pool.close()
        return out

    out = asyncio.run(scenario())
    bodies = [row[0] for row in out["me"]]
    assert len(set(bodies)) == 1
    assert json.loads(bodies[0])["id"] == user.id
    assert [row[1:] for row in out["me"]] == [(None, None)] * 3  # no response.status
    assert out["groups"][0] == "[]"
    setup = db.PREPARED_SETUP
    for n in range(1, db.SETUP_VALUES + 1):
        setup = setup.replace("%s", f"${n}", 1)
    # The setup and me, then the read-only setup and my_groups: one statement each,
    # never one per request.
    first = out["prepared_first"]
    assert len(first) == 4, first
    assert first[0] == setup and '"api"."me"()' in first[1]
    assert "transaction_read_only" in first[2] and '"api"."my_groups"(' in first[3]
    assert out["errors"] == {"22023"}
    assert out["prepared_after_errors"] == []
    assert out["read_only_error"] == "25006"  # read_only_sql_transaction
    assert out["status"] == psycopg.pq.TransactionStatus.IDLE
    assert [row[0] for row in out["after"]] == bodies
    final = out["prepared"]
    assert len(final) == 2 and final[0] == setup and '"api"."me"()' in final[1], final
    # Nothing of the callers' survives on the connection.
    current_user, jwt_claims, timeout, read_only = out["left"]
    assert current_user == "authenticator"
    assert jwt_claims in (None, "")
    assert timeout == role_statement_timeout(database_url)  # the role's own, not the call's
    assert read_only == "off"
    assert admin.execute("select count(*) from app.groups where creator_id = %s",
                         (user.id,)).fetchone() == (0,)


def role_statement_timeout(database_url: str) -> str:
    """authenticator's statement_timeout outside any call: 0 where the migrations
    made the role, 8s on Supabase (ALTER ROLE ... SET)."""
    with psycopg.connect(authenticator_url(database_url)) as conn:
        row = conn.execute("select current_setting('statement_timeout')").fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture(scope="module")
def one_connection(database_url: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[GatewayProcess]:
    proc = start_gateway(database_url, tmp_path_factory.mktemp("prepared") / "gateway.log",
                         DB_PREPARED_STATEMENTS="on", POOL_MIN="1", POOL_MAX="1")
    yield proc
    stop_gateway(proc)


def test_one_connection_carries_nothing_between_callers(one_connection: GatewayProcess,
                                                         make_user) -> None:
    """Every request shares the one connection: each sees only its own caller."""
    a, b = make_user("Alba"), make_user("Bru")
    url = one_connection.url
    with httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(3):
            me_a = http.post("/rest/v1/rpc/me", headers=a.headers, json={})
            assert me_a.status_code == 200 and me_a.json()["id"] == a.id
            anon = http.post("/rest/v1/rpc/me", json={})
            assert anon.status_code == 401, anon.text
            bad = http.post("/rest/v1/rpc/create_group", headers=b.headers, json={"name": ""})
            assert bad.status_code == 400 and bad.json()["code"] == "22023"
            me_b = http.get("/rest/v1/rpc/me", headers=b.headers)
            assert me_b.status_code == 200 and me_b.json()["id"] == b.id
        made = http.post("/rest/v1/rpc/create_group", headers=b.headers, json={"name": "Kept"})
        assert made.status_code == 200 and made.json()["creator_id"] == b.id
        listed = http.get("/rest/v1/rpc/my_groups", headers=b.headers)
        assert [g["name"] for g in listed.json()] == ["Kept"]
        assert http.get("/rest/v1/rpc/my_groups", headers=a.headers).json() == []


@pytest.mark.parametrize(("name", "value", "message"), [
    ("DB_PREPARED_STATEMENTS", "sometimes", "must be on or off, not 'sometimes'"),
    ("POOL_MAX", "twenty", "must be a whole number, not 'twenty'"),
    ("POOL_TIMEOUT", "soon", "must be a number, not 'soon'"),
])
def test_a_setting_that_cannot_be_read_stops_the_gateway_with_its_name(
        name: str, value: str, message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"], cwd=ROOT, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", name: value}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"python -m gateway: {name} {message}"
    assert proc.stdout == ""
