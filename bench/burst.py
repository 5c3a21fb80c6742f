"""The registration-opening burst: an event with BURST_SEATS seats opens and
BURST_USERS distinct users try to register within about a second.

- through the gateway: each user opens its own connection at its arrival time
  (arrivals evenly spread over BURST_SECONDS), posts
  /rest/v1/rpc/register_for_event with its own token, reads the answer and closes;
- straight to PostgreSQL, beside it: the same arrivals, each running the
  gateway's transaction script for register_for_event on a pool of as many
  `authenticator` connections as the gateway's workers hold together.

Both clients are Python (asyncio on uvloop, as the gateway's server), run on the
same machine. Latency is measured per user from its arrival (connect, or waiting for a pooled
connection, included) to its answer. Reported: registrations made (must be
exactly the seats), answers by status, connection errors, 5xx, time from the
first arrival to the last answer, p50 and p99."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections import Counter
from typing import Any

import orjson
import psycopg
import uvloop
from psycopg import AsyncClientCursor
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from gateway import db

from . import layout as L
from .http import Tokens
from .stats import percentile

BURST_SEATS = 100
BURST_USERS = 2_000
BURST_SECONDS = 1.0
PATH = "/rest/v1/rpc/register_for_event"


def prepare(url: str, kind: str) -> str:
    """A new open event of BURST_SEATS seats (one per burst); returns its id."""
    event = L.bench_id("burst-event", int(time.time() * 1000) % 1_000_000_000)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into app.events (id, creator_id, title, status, capacity) "
            "values (%s, %s, %s, 'open', %s)",
            (event, L.user_id(L.ORGANIZER), f"Burst ({kind})", BURST_SEATS))
    return event


def registered(url: str, event: str) -> tuple[int, int]:
    """(confirmed registrations, seats_taken) of the event."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select (select count(*) from app.registrations r where r.event_id = e.id "
            "and r.status = 'confirmed'), e.seats_taken from app.events e where e.id = %s",
            (event,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _users() -> list[int]:
    return list(range(1, BURST_USERS + 1))


def _summary(url: str, event: str, outcomes: list[tuple[int, float, float]],
             started: float) -> dict[str, Any]:
    """outcomes: (status or 0 for a connection error, seconds taken, end time)."""
    latencies = sorted(o[1] * 1000 for o in outcomes if o[0])
    statuses = Counter(o[0] for o in outcomes)
    count, seats = registered(url, event)
    return {
        "users": len(outcomes), "seats": BURST_SEATS, "registered": count,
        "seats_taken": seats, "exactly_seats": count == BURST_SEATS == seats,
        "statuses": {str(k): v for k, v in sorted(statuses.items()) if k},
        "connection_errors": statuses.get(0, 0),
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
        "last_answer_s": round(max(o[2] for o in outcomes) - started, 3),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    }


async def _http_burst(base_url: str, event: str, tokens: dict[int, str],
                      timeout: float) -> tuple[list[tuple[int, float, float]], float]:
    target = urllib.parse.urlsplit(base_url)
    host, port = target.hostname or "127.0.0.1", target.port or 80
    body = orjson.dumps({"event_id": event})
    users = _users()
    requests = {u: (f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"Authorization: Bearer {tokens[u]}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
                for u in users}
    loop = asyncio.get_running_loop()
    started = loop.time() + 0.05
    step = BURST_SECONDS / len(users)

    async def one(k: int, user: int) -> tuple[int, float, float]:
        await asyncio.sleep(max(0.0, started + k * step - loop.time()))
        t0 = loop.time()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            try:
                writer.write(requests[user])
                line = await asyncio.wait_for(reader.readline(), timeout)
                await asyncio.wait_for(reader.read(), timeout)
            finally:
                writer.close()
            status = int(line.split()[1])
        except (OSError, TimeoutError, ValueError, IndexError):
            status = 0
        t1 = loop.time()
        return status, t1 - t0, t1

    outcomes = await asyncio.gather(*(one(k, u) for k, u in enumerate(users)))
    return list(outcomes), started


async def _direct_burst(url: str, event: str, connections: int
                        ) -> tuple[list[tuple[int, float, float]], float]:
    pool = AsyncConnectionPool(url, min_size=connections, max_size=connections, open=False,
                               timeout=30, kwargs={"autocommit": True, "prepare_threshold": None})
    await pool.open(wait=True)
    catalog = db.Catalog()
    await catalog.load(pool)
    fn = catalog.functions["register_for_event"][0]
    args = orjson.dumps({"event_id": event}).decode()
    headers = orjson.dumps({"host": "127.0.0.1", "content-type": "application/json"}).decode()
    loop = asyncio.get_running_loop()
    started = loop.time() + 0.05
    step = BURST_SECONDS / BURST_USERS

    async def one(k: int, user: int) -> tuple[int, float, float]:
        await asyncio.sleep(max(0.0, started + k * step - loop.time()))
        t0 = loop.time()
        claims = orjson.dumps({"role": "authenticated", "sub": L.user_id(user)}).decode()
        status = 200
        try:
            async with pool.connection() as conn:
                cursor = AsyncClientCursor(conn)
                try:
                    await cursor.execute(fn.script, (  # type: ignore[arg-type]
                        "authenticated", claims, "POST", PATH, headers, "", "8000", "2000", args))
                except psycopg.errors.Error as exc:
                    if conn.info.transaction_status != TransactionStatus.IDLE:
                        await conn.execute("rollback")
                    code = exc.sqlstate or ""
                    status = int(code[2:]) if code.startswith("PT") else 500
        except psycopg.OperationalError:
            status = 0
        t1 = loop.time()
        return status, t1 - t0, t1

    try:
        outcomes = await asyncio.gather(*(one(k, u) for k, u in enumerate(_users())))
    finally:
        await pool.close()
    return list(outcomes), started


def run_http(url: str, base_url: str, tokens: Tokens, timeout: float = 30.0) -> dict[str, Any]:
    event = prepare(url, "gateway")
    minted = {u: tokens(u) for u in _users()}
    outcomes, started = uvloop.run(_http_burst(base_url, event, minted, timeout))
    return _summary(url, event, outcomes, started)


def run_direct(url: str, auth_url: str, connections: int) -> dict[str, Any]:
    event = prepare(url, "direct")
    outcomes, started = uvloop.run(_direct_burst(auth_url, event, connections))
    return _summary(url, event, outcomes, started)


def line(label: str, r: dict[str, Any]) -> str:
    return (f"  burst   {label:8} {r['registered']} of {r['users']} registered "
            f"({r['seats']} seats), statuses {r['statuses']}, {r['connection_errors']} "
            f"connection errors, last answer {r['last_answer_s']:.2f} s, "
            f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms")
