"""Server time of the lists for one caller with long lists (issue 19, item 11):
`scripts/devdb run .venv/bin/python -m bench.lists [calls...]` on a migrated
DATABASE_URL.

The caller is in 200 groups of 20 members each (among 20,000 groups of 20), in
200 like groups (one per event, 3 members, 2 authors; among 20,000), and has 200
notifications (among 100,000). Each call runs 200 times as the caller, in one
session, after 20 warm-up calls; printed: the mean and p50 in ms, measured by
clock_timestamp() inside the database around the call (no network, no
gateway). The arguments are SQL calls; by default the ones every version of the
schema has (the whole list before item 11; the first page of 50 after), plus
max_rows => 200 when the schema has it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Callable

import psycopg

LOAD = [
    "create schema bench_lists",
    "create table bench_lists.users as select gen_random_uuid() id, n "
    "from generate_series(0, 1999) n",
    "insert into auth.users (id, email) select id, 'lists-' || n || '-' || id || '@bench.test' "
    "from bench_lists.users",
    # 20,000 groups of 20 members; the caller (n = 0) is in 200 of them.
    "create table bench_lists.groups as "
    "select gen_random_uuid() id, g from generate_series(0, 19999) g",
    "insert into app.groups (id, name, creator_id) select b.id, 'Group ' || b.g, u.id "
    "from bench_lists.groups b join bench_lists.users u on u.n = b.g % 2000",
    "insert into app.group_members (group_id, user_id, role, created_at) "
    "select b.id, u.id, case when m = 0 then 'owner' else 'member' end, "
    "       now() - b.g * interval '1 second' "
    "from bench_lists.groups b, generate_series(0, 19) m "
    "join bench_lists.users u on true "
    "where u.n = case when m = 19 and b.g % 100 = 0 then 0 else (b.g + m * 7) % 1999 + 1 end "
    "on conflict do nothing",
    # 20,000 events, each with a like group of 3 and 2 authors; the caller is in 200.
    "create table bench_lists.events as select gen_random_uuid() id, gen_random_uuid() gid, e "
    "from generate_series(0, 19999) e",
    "insert into app.events (id, title, creator_id) select b.id, 'Event ' || b.e, u.id "
    "from bench_lists.events b join bench_lists.users u on u.n = b.e % 1999 + 1",
    "insert into app.event_authors (event_id, user_id) select b.id, u.id "
    "from bench_lists.events b join bench_lists.users u "
    "on u.n in (b.e % 1999 + 1, (b.e + 3) % 1999 + 1)",
    "insert into app.like_groups (id, event_id, creator_id) select b.gid, b.id, u.id "
    "from bench_lists.events b join bench_lists.users u on u.n = (b.e + 11) % 1999 + 1",
    "insert into app.like_group_routes (id, event_id) select b.gid, b.id from bench_lists.events b",
    "insert into app.like_group_members (group_id, event_id, user_id, created_at) "
    "select b.gid, b.id, u.id, now() - b.e * interval '1 second' "
    "from bench_lists.events b, generate_series(0, 2) m join bench_lists.users u on true "
    "where u.n = case when m = 2 and b.e % 100 = 0 then 0 else (b.e + 11 + m * 13) % 1999 + 1 end",
    # 100,000 notifications, 200 of them the caller's.
    "insert into app.notifications (user_id, type, created_at) "
    "select u.id, 'digest', now() - x * interval '1 second' "
    "from generate_series(0, 99999) x join bench_lists.users u on u.n = "
    "case when x % 500 = 0 then 0 else x % 1999 + 1 end",
    "analyze",
]

DEFAULT_CALLS = ["api.my_groups()", "api.my_like_groups()", "api.my_notifications()"]
PAGED_CALLS = ["api.my_groups(max_rows => 200)", "api.my_like_groups(max_rows => 200)",
               "api.my_notifications(max_rows => 200)"]

TIME = """
do $$
declare
    t0 timestamptz;
    v jsonb;
begin
    for i in 1 .. %(n)s loop
        t0 := clock_timestamp();
        v := %(call)s;
        -- The items of a list, or of an answer's "groups" (the approval queue).
        insert into bench_times values (extract(epoch from clock_timestamp() - t0) * 1000,
                                        jsonb_array_length(coalesce(v -> 'groups', v)));
    end loop;
end $$
"""


def time_calls(conn: psycopg.Connection, caller: str, calls: list[str], warmup: int,
               count: int, shown: Callable[[str], str] = lambda call: call) -> None:
    """Times each call (an SQL expression answering jsonb) as `caller`, signed in
    as authenticated: `warmup` calls, then `count` timed ones; prints one line
    per call (its items, mean and median ms). Used by bench.queue too."""
    conn.execute("create temp table bench_times (ms float8, items int)")
    conn.execute("grant all on bench_times to authenticated")
    conn.execute("select set_config('request.jwt.claims', %s, false)",
                 (json.dumps({"sub": caller, "role": "authenticated"}),))
    for call in calls:
        conn.execute("set role authenticated")
        conn.execute(TIME % {"n": warmup, "call": call})  # type: ignore[arg-type]
        conn.execute("truncate bench_times")
        conn.execute(TIME % {"n": count, "call": call})  # type: ignore[arg-type]
        rows = conn.execute("select ms, items from bench_times").fetchall()
        conn.execute("truncate bench_times")
        conn.execute("reset role")
        times = [r[0] for r in rows]
        print(f"{shown(call):55} items {rows[0][1]:5}  mean {statistics.mean(times):8.3f} ms  "
              f"p50 {statistics.median(times):8.3f} ms", flush=True)


def main() -> int:
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        # Loaded once: run again after a migration, the same rows are timed again.
        if conn.execute("select to_regnamespace('bench_lists')").fetchone() == (None,):
            for statement in LOAD:
                conn.execute(statement)  # type: ignore[arg-type]  # the bench's own SQL
        (caller,) = conn.execute(
            "select id::text from bench_lists.users where n = 0").fetchone() or ("",)
        paged = conn.execute("select 1 from pg_proc where proname = 'my_groups' "
                             "and pronargs = 2").fetchone() is not None
        calls = sys.argv[1:] or DEFAULT_CALLS + (PAGED_CALLS if paged else [])
        time_calls(conn, caller, calls, warmup=20, count=200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
