"""python -m bench.limiter: what the rate limiter leaves behind, and what a call costs.

Runs against whichever limiter the migrated schema has: the log of hits
(`app.rate_limit_hits`, a row per counted attempt) or the counters
(`app.rate_limit_counters`, one row per user and bucket). In a database of its
own (`bench_limiter`, migrated):

1. **Fill.** 1,000 users x 100 attempts = 100,000 calls of
   `private.rate_limit(bucket, key)`, one transaction each (autocommit), the
   users taken in turn and each user's attempts spread over four buckets: two
   of 60 s windows (`join_code`, `respond_invite`), one of an hour
   (`create_invite`) and one of a day (`invite_mail`). Every limit is raised
   first, so every attempt is allowed and counted: the worst case for a log.
   The backend's CPU time (user + system, /proc/PID/stat; the server must run
   on this machine) and the wall time are read around each of 4 rounds of
   25,000 calls; reported per call (median of the rounds, and the range).
2. **Left behind.** The table's size with its indexes (pg_total_relation_size)
   right after the fill, with autovacuum off on that table so that the figure
   does not depend on when it ran, and after a VACUUM; rows, inserts, updates,
   HOT updates, deletes and dead tuples (pg_stat_user_tables).
3. **Two minutes later.** Every stored time is moved two minutes back (as if
   two minutes had passed: the windows of 60 s have closed, the others are
   open), then `private.rate_limit_prune()` runs, as the operator's audit-prune
   does (the rows it deleted and the rows left), a VACUUM, and the same
   100,000 attempts again: CPU and wall time per call, what the table holds
   after them (the inserts, updates and deletes are theirs), and after a
   VACUUM.
4. **Refused.** One key at its limit (`join_code` back to 10 a minute): CPU and
   wall time per refused call over 4 rounds of 5,000; then the same through
   `private.rate_limited`, the gate every counted call goes through, which
   also counts the refusal in `app.audit_refusals` and builds the 429 answer.

Needs DATABASE_URL, a superuser URL of a cluster it may fill:
`scripts/devdb run .venv/bin/python -m bench.limiter`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from . import load

TICKS = os.sysconf("SC_CLK_TCK")
BUCKETS = ("join_code", "respond_invite", "create_invite", "invite_mail")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def the_table(conn: psycopg.Connection) -> tuple[str, str]:
    """(table, its time column) of the limiter this schema has."""
    if conn.execute("select to_regclass('app.rate_limit_counters')").fetchone() != (None,):
        return "app.rate_limit_counters", "window_start"
    return "app.rate_limit_hits", "created_at"


def flush(conn: psycopg.Connection) -> None:
    """This backend's pending table counts, into the shared statistics now (a
    VACUUM sets the dead tuples it leaves; counts flushed after it would add to
    them the dead versions it removed)."""
    conn.execute("select pg_stat_force_next_flush()")
    time.sleep(1.2)  # the flush happens when the backend is next idle
    conn.execute("select 1")
    conn.execute("select pg_stat_clear_snapshot()")


def vacuum(conn: psycopg.Connection, table: str) -> None:
    flush(conn)
    conn.execute(f"vacuum {table}")


def stats(conn: psycopg.Connection, table: str) -> dict[str, Any]:
    flush(conn)
    row = conn.execute(
        "select pg_total_relation_size(%s::regclass), n_live_tup, n_tup_ins, n_tup_upd,"
        " n_tup_hot_upd, n_tup_del, n_dead_tup from pg_stat_user_tables"
        " where relid = %s::regclass", (table, table)).fetchone()
    assert row is not None
    rows = conn.execute(f"select count(*) from {table}").fetchone()[0]  # type: ignore[index]
    keys = ("size", "live", "inserts", "updates", "hot_updates", "deletes", "dead")
    return {"rows": rows, **dict(zip(keys, row, strict=True))}


def rounds(conn: psycopg.Connection, pid: int, calls: list[tuple[str, uuid.UUID]],
           count: int, query: str = "select private.rate_limit(%s, %s) = 0"
           ) -> dict[str, Any]:
    cpu: list[float] = []
    wall: list[float] = []
    allowed = 0
    for start in range(0, len(calls), count):
        chunk = calls[start:start + count]
        c0, t0 = cpu_seconds(pid), time.perf_counter()
        for bucket, key in chunk:
            allowed += conn.execute(query, (bucket, key)).fetchone() == (True,)
        c1, t1 = cpu_seconds(pid), time.perf_counter()
        cpu.append((c1 - c0) / len(chunk) * 1e6)
        wall.append((t1 - t0) / len(chunk) * 1e6)
    return {"cpu_us": round(statistics.median(cpu)), "cpu_range": (round(min(cpu)),
            round(max(cpu))), "wall_us": round(statistics.median(wall)),
            "wall_range": (round(min(wall)), round(max(wall))), "allowed": allowed}


def show_stats(label: str, s: dict[str, Any]) -> None:
    print(f"  {label:34} {s['size'] / 1024:9.0f} KiB  rows {s['rows']:7d}  inserts "
          f"{s['inserts']:7d}  updates {s['updates']:7d} (HOT {s['hot_updates']:7d})  "
          f"deletes {s['deletes']:7d}  dead {s['dead']:7d}", flush=True)


def show_calls(label: str, r: dict[str, Any], total: int) -> None:
    print(f"  {label:34} cpu {r['cpu_us']:4d} us/call ({r['cpu_range'][0]}-"
          f"{r['cpu_range'][1]})  wall {r['wall_us']:4d} us/call ({r['wall_range'][0]}-"
          f"{r['wall_range'][1]})  allowed {r['allowed']} of {total}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.limiter")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--attempts", type=int, default=100, help="per user")
    parser.add_argument("--refused", type=int, default=20000, help="refused calls, one key")
    args = parser.parse_args(argv)
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    url = load.create_database(server_url, "bench_limiter")
    with psycopg.connect(url, autocommit=True) as conn:
        table, column = the_table(conn)
        print(f"limiter: {table}", flush=True)
        conn.execute(f"alter table {table} set (autovacuum_enabled = off)")
        conn.execute("update app.rate_limits set max_attempts = 1000000000")
        pid = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        users = [uuid.UUID(int=(0xB0 << 120) + n) for n in range(args.users)]
        calls = [(BUCKETS[a % len(BUCKETS)], u) for a in range(args.attempts) for u in users]
        total = len(calls)
        conn.execute("select private.rate_limit('join_code', %s)", (uuid.uuid4(),))  # warm up
        fill = rounds(conn, pid, calls, -(-total // 4))
        show_calls(f"fill, {args.users} users x {args.attempts}", fill, total)
        show_stats("after the fill", stats(conn, table))
        vacuum(conn, table)
        show_stats("after VACUUM", stats(conn, table))

        # Two minutes later: every stored time moved back, the prune, a VACUUM.
        conn.execute(f"update {table} set {column} = {column} - interval '2 minutes'")
        pruned = conn.execute("select private.rate_limit_prune()").fetchone()[0]  # type: ignore[index]
        vacuum(conn, table)
        base = stats(conn, table)
        print(f"  two minutes later the prune deleted {pruned}; {base['rows']} rows left",
              flush=True)
        again = rounds(conn, pid, calls, -(-total // 4))
        show_calls("then the same attempts again", again, total)
        second = stats(conn, table)
        for k in ("inserts", "updates", "hot_updates", "deletes"):
            second[k] -= base[k]
        show_stats("after them (their writes)", second)
        vacuum(conn, table)
        final = stats(conn, table)
        print(f"  {'after VACUUM':34} {final['size'] / 1024:9.0f} KiB  rows {final['rows']:7d}",
              flush=True)

        conn.execute("update app.rate_limits set max_attempts = 10 where bucket = 'join_code'")
        hot = uuid.uuid4()
        for _ in range(10):
            conn.execute("select private.rate_limit('join_code', %s)", (hot,))
        refused = rounds(conn, pid, [("join_code", hot)] * args.refused, args.refused // 4)
        show_calls("refused, one key at its limit", refused, args.refused)
        gated = rounds(conn, pid, [("join_code", hot)] * args.refused, args.refused // 4,
                       "select private.rate_limited(%s, 'bench.refused', null, %s) is null")
        show_calls("the same through rate_limited", gated, args.refused)
    return 0


if __name__ == "__main__":
    sys.exit(main())
