"""python -m bench.subxact: what an exception block costs a call (issue 19, item 10).

A plpgsql block with EXCEPTION opens a subtransaction each time it is entered,
whether or not anything is raised; a write inside it takes a transaction id of
its own. This measures one insert written both ways, each call its own
transaction as an api call is: caught (`begin insert ... exception when
unique_violation ...`, as register_for_event and the like-group inserts were) and
skipped (`insert ... on conflict do nothing` + FOUND, as they are now). Reported
per call: the backend's CPU time (/proc/PID/stat, the server must run on this
machine; median of the rounds), the wall time and the transaction ids used.
`--distribute` on a Citus coordinator distributes the table first. In a scratch schema,
dropped afterwards. Run it with `scripts/devdb run .venv/bin/python -m bench.subxact`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import psycopg

from .cpu import cpu_seconds

SETUP = """
create schema bench_subxact;
create table bench_subxact.rows (
    id bigint generated always as identity,
    event_id uuid not null, user_id uuid not null, unique (event_id, user_id));
create function bench_subxact.caught(e uuid, u uuid) returns bigint language plpgsql as $$
declare v bigint;
begin
    begin
        insert into bench_subxact.rows (event_id, user_id) values (e, u) returning id into v;
    exception when unique_violation then
        raise exception using errcode = 'PT409', message = 'taken';
    end;
    return v;
end $$;
create function bench_subxact.skipped(e uuid, u uuid) returns bigint language plpgsql as $$
declare v bigint;
begin
    insert into bench_subxact.rows (event_id, user_id) values (e, u)
    on conflict do nothing returning id into v;
    if not found then
        raise exception using errcode = 'PT409', message = 'taken';
    end if;
    return v;
end $$;
"""


def measure(conn: psycopg.Connection, fn: str, count: int, rounds: int) -> dict[str, float]:
    pid = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    event = uuid.uuid4()
    query = f"select bench_subxact.{fn}(%s, %s)"
    for _ in range(200):  # warm-up: plans cached
        conn.execute(query, (event, uuid.uuid4()))
    cpu, wall = [], []
    xid0 = int(conn.execute("select pg_current_xact_id()::text").fetchone()[0])  # type: ignore[index]
    for _ in range(rounds):
        c0, t0 = cpu_seconds(pid), time.perf_counter()
        for _ in range(count):
            conn.execute(query, (event, uuid.uuid4()))
        cpu.append((cpu_seconds(pid) - c0) / count * 1e6)
        wall.append((time.perf_counter() - t0) / count * 1e6)
    xid1 = int(conn.execute("select pg_current_xact_id()::text").fetchone()[0])  # type: ignore[index]
    return {"cpu_us": round(statistics.median(cpu), 1), "cpu_us_min": round(min(cpu), 1),
            "cpu_us_max": round(max(cpu), 1), "wall_us": round(statistics.median(wall), 1),
            "xids_per_call": round((xid1 - xid0 - 1) / (count * rounds), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.subxact")
    parser.add_argument("--count", type=int, default=5000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--distribute", action="store_true",
                        help="on a Citus coordinator: distribute the table by event_id "
                             "(the CPU is then the coordinator's only)")
    args = parser.parse_args(argv)
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("drop schema if exists bench_subxact cascade")
        conn.execute(SETUP)
        if args.distribute:
            conn.execute("select create_distributed_table('bench_subxact.rows', 'event_id')")
        try:
            for fn in ("caught", "skipped", "caught", "skipped"):
                print(fn, measure(conn, fn, args.count, args.rounds), flush=True)
        finally:
            conn.execute("drop schema bench_subxact cascade")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
