"""Delegated against not delegated calls on a Citus coordinator (issue 20, item 3).

    scripts/citus-cluster run bash -c '.venv/bin/python -m gateway migrate &&
        .venv/bin/python -m bench.delegation --seconds 20'

Runs register_for_event and cancel_registration (all of their work is on the
event's shard) in turns, each call a transaction, in three forms:

- gateway: the gateway's own script (gateway/db.py: begin; set_config of role and
  claims; the call inside `with _c as materialized (select to_json(api.f(...)))`;
  commit), the functions not distributed;
- gateway+declared: the same script after create_distributed_function(...,
  'event_id', colocate_with => 'app.events', force_delegation => true);
- delegated: `begin; set local role ...; set local request.jwt.claims = ...;
  select api.f(...); commit` with the functions so declared.

For each it prints the statements the coordinator sends to workers per call
(citus.log_remote_commands) and calls/s over `--clients` connections. It
declares the two functions as distributed and leaves them so: run it on a
throwaway cluster only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from gateway.db import SETUP, _build_query, _scripts

FUNCTIONS = ("register_for_event", "cancel_registration")


def gateway_script(name: str) -> str:
    query = _build_query(name, ("event_id",), ("uuid",), False, name == "cancel_registration")
    return _scripts(query)[0]


def gateway_values(user: str, event: str) -> tuple[Any, ...]:
    claims = json.dumps({"sub": user, "role": "authenticated"})
    return ("authenticated", claims, "POST", "/rpc", "{}", "", "8000", "2000",
            json.dumps({"event_id": event}))


def delegated_statements(name: str, user: str, event: str) -> list[str]:
    """One statement each, sent in one pipeline (one round trip): with
    citus.propagate_set_commands = local, Citus sends a SET LOCAL on to the
    workers as the text of the query that holds it, so a SET LOCAL inside a
    multi-statement simple query would send the whole script, call included."""
    claims = json.dumps({"sub": user, "role": "authenticated"})
    return ["begin", "set local role authenticated",
            sql.SQL("set local request.jwt.claims = {}").format(
                sql.Literal(claims)).as_string(None),
            sql.SQL("select {}({}::uuid)").format(
                sql.Identifier("api", name), sql.Literal(event)).as_string(None),
            "commit"]


def run_call(conn: psycopg.Connection, form: str, name: str, user: str, event: str) -> None:
    if form == "delegated":
        try:
            with conn.pipeline():
                for statement in delegated_statements(name, user, event):
                    conn.execute(statement)  # type: ignore[arg-type]
        except psycopg.Error:
            if not conn.closed:
                conn.execute("rollback")
            raise
        return
    cursor = psycopg.ClientCursor(conn)
    cursor.execute(gateway_script(name), gateway_values(user, event))  # type: ignore[arg-type]
    while cursor.nextset():
        pass


def remote_commands(url: str, form: str, user: str, event: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        seen: list[str] = []
        conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
        conn.execute("set citus.log_remote_commands = on")
        conn.execute("set client_min_messages = log")
        for name in FUNCTIONS:
            seen.clear()
            run_call(conn, form, name, user, event)
            counts[name] = sum(1 for m in seen if m.startswith("issuing"))
    return counts


def throughput(url: str, form: str, pairs: list[tuple[str, str]], seconds: float
               ) -> tuple[float, float]:
    """Calls per second over all clients, and the median call in ms."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    lock = threading.Lock()

    def client(user: str, event: str) -> None:
        mine: list[float] = []
        with psycopg.connect(url, autocommit=True) as conn:
            i = 0
            while time.monotonic() < stop or i % 2:  # ends unregistered
                started = time.perf_counter()
                run_call(conn, form, FUNCTIONS[i % 2], user, event)
                mine.append(time.perf_counter() - started)
                i += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=pair) for pair in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / seconds, statistics.median(latencies) * 1000 if latencies else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    assert SETUP is not None
    pairs: list[tuple[str, str]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(args.clients):
            row = conn.execute("insert into auth.users (email) values (%s) returning id",
                               (f"delegation-{n}-{time.time_ns()}@example.com",)).fetchone()
            assert row is not None
            event = conn.execute("insert into app.events (title, creator_id, capacity) "
                                 "values ('Delegation', %s, 1000) returning id",
                                 (row[0],)).fetchone()
            assert event is not None
            pairs.append((str(row[0]), str(event[0])))
    results: list[tuple[str, dict[str, int], float, float]] = []
    for form in ("gateway", "gateway+declared", "delegated"):
        if form == "gateway+declared":
            with psycopg.connect(url, autocommit=True) as conn:
                for name in FUNCTIONS:
                    conn.execute("select create_distributed_function(%s, 'event_id', "
                                 "colocate_with => 'app.events', force_delegation => true)",
                                 (f"api.{name}(uuid)",))
        try:
            counts = remote_commands(url, form, *pairs[0])
            rate, p50 = throughput(url, form, pairs, args.seconds)
            results.append((form, counts, rate, p50))
        except psycopg.Error as exc:
            results.append((form, {"error": 0}, 0.0, 0.0))
            print(f"{form}: {type(exc).__name__}: {exc.diag.message_primary}")
    print("| form | remote statements: register / cancel | calls/s | p50 ms |")
    print("|---|---:|---:|---:|")
    for form, counts, rate, p50 in results:
        shown = " / ".join(str(counts.get(n, "-")) for n in FUNCTIONS)
        print(f"| {form} | {shown} | {rate:.0f} | {p50:.1f} |")


if __name__ == "__main__":
    main()
