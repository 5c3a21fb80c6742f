"""Server time of the approval queue and the other lists paged last (issue 19,
item 11): `scripts/devdb run .venv/bin/python -m bench.queue` on a migrated
DATABASE_URL.

One event with 1,000 pending like groups and 5,000 decided ones (3 members
each), the caller one of its 2 authors; the caller has 1,000 friendships
(among 20,000), takes part in 500 chats (among 5,000) and belongs to a group
with 2,000 invites (among 20,000). Each call runs 100 times as the caller in
one session, after 10 warm-up calls; printed: the items answered, the mean and
p50 in ms, measured by clock_timestamp() inside the database around the call
(no network, no gateway). Loaded once: run it again after a migration and the
same rows are timed again (the calls with page arguments only where the
functions take them).
"""

from __future__ import annotations

import os
import sys

import psycopg

from .lists import time_calls

LOAD = [
    "create schema bench_queue",
    "create table bench_queue.users as select gen_random_uuid() id, n "
    "from generate_series(0, 20999) n",
    "insert into auth.users (id, email) select id, 'queue-' || n || '-' || id || '@bench.test' "
    "from bench_queue.users",
    "insert into app.profiles (id, display_name) select id, 'User ' || n from bench_queue.users "
    "on conflict (id) do nothing",
    # The event: caller (n = 0) and n = 1 its authors; 6,000 like groups of 3.
    "create table bench_queue.event as select gen_random_uuid() id",
    "insert into app.events (id, title, creator_id, capacity) "
    "select e.id, 'Queue', u.id, 100000 from bench_queue.event e, bench_queue.users u "
    "where u.n = 0",
    "insert into app.event_authors (event_id, user_id) select e.id, u.id "
    "from bench_queue.event e, bench_queue.users u where u.n in (0, 1) on conflict do nothing",
    "create table bench_queue.groups as select gen_random_uuid() id, g "
    "from generate_series(0, 5999) g",
    "insert into app.like_groups (id, event_id, creator_id, status, decided_at, created_at) "
    "select b.id, e.id, u.id, case when b.g < 1000 then 'pending' "
    "       when b.g % 2 = 0 then 'approved' else 'rejected' end, "
    "       case when b.g >= 1000 then now() - (b.g - 1000) * interval '1 minute' end, "
    "       now() - b.g * interval '1 minute' - interval '1 year' "
    "from bench_queue.groups b, bench_queue.event e, bench_queue.users u where u.n = b.g + 10",
    "insert into app.like_group_routes (id, event_id) select b.id, e.id "
    "from bench_queue.groups b, bench_queue.event e",
    "insert into app.like_group_members (group_id, event_id, user_id, pending, created_at) "
    "select b.id, e.id, u.id, false, now() from bench_queue.groups b, bench_queue.event e, "
    "generate_series(0, 2) m join bench_queue.users u on true where u.n = b.g + 10 + m * 6000 "
    "and b.g + 10 + m * 6000 < 21000",
    # 20,000 friendships: 1,000 of the caller's, the others between other users.
    "insert into app.friendships (user_low, user_high, requester_id, status, accepted_at, "
    "created_at) select least(a.id, b.id), greatest(a.id, b.id), a.id, 'accepted', now(), "
    "now() - x * interval '1 minute' from generate_series(1, 20000) x "
    "join bench_queue.users a on a.n = case when x <= 1000 then 0 else x end "
    "join bench_queue.users b on b.n = case when x <= 1000 then x else (x + 7) % 20999 + 1 end "
    "where a.id <> b.id on conflict do nothing",
    # 5,000 chats on the decided groups: the caller takes part in 500.
    "insert into app.chats (type, like_group_id, event_id) select 'approved_group', b.id, e.id "
    "from bench_queue.groups b, bench_queue.event e where b.g >= 1000",
    "insert into app.chat_participants (chat_id, event_id, user_id, created_at) "
    "select c.id, c.event_id, u.id, c.created_at - g.g * interval '1 second' "
    "from app.chats c join bench_queue.groups g on g.id = c.like_group_id "
    "join bench_queue.users u on u.n = case when g.g % 10 = 0 then 0 else 1 end",
    # 10 groups, the caller's with 2,000 invites, the others 2,000 each.
    "create table bench_queue.teams as select gen_random_uuid() id, t "
    "from generate_series(0, 9) t",
    "insert into app.groups (id, name, creator_id, member_count) "
    "select t.id, 'Team ' || t.t, u.id, 1 from bench_queue.teams t, bench_queue.users u "
    "where u.n = t.t",
    "insert into app.group_members (group_id, user_id, role) "
    "select t.id, u.id, 'owner' from bench_queue.teams t, bench_queue.users u where u.n = t.t",
    "insert into app.group_invites (group_id, created_by, code_hash, code_hint, created_at) "
    "select t.id, u.id, sha256(gen_random_uuid()::text::bytea), 'abcd', "
    "now() - x * interval '1 second' from bench_queue.teams t "
    "join bench_queue.users u on u.n = t.t, generate_series(1, 2000) x",
    "analyze",
]

CALLS = [
    "api.event_like_groups(%(event)s)",
    "api.list_friends()",
    "api.my_chats()",
    "api.list_group_invites(%(team)s)",
]
PAGED = [
    "api.event_like_groups(%(event)s, max_rows => 200)",
    "api.list_friends(max_rows => 200)",
    "api.my_chats(max_rows => 200)",
    "api.list_group_invites(%(team)s, max_rows => 200)",
]

def main() -> int:
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("select to_regnamespace('bench_queue')").fetchone() == (None,):
            for statement in LOAD:
                conn.execute(statement)  # type: ignore[arg-type]  # the bench's own SQL
        (caller, event, team) = conn.execute(
            "select u.id::text, e.id::text, t.id::text from bench_queue.users u, "
            "bench_queue.event e, bench_queue.teams t where u.n = 0 and t.t = 0").fetchone() \
            or ("", "", "")
        paged = conn.execute("select 1 from pg_proc where proname = 'my_chats' "
                             "and pronargs = 2").fetchone() is not None
        names = {"event": f"'{event}'::uuid", "team": f"'{team}'::uuid"}
        calls = [c % names for c in sys.argv[1:] or CALLS + (PAGED if paged else [])]
        time_calls(conn, caller, calls, warmup=10, count=100,
                   shown=lambda call: call.replace(event, "EVENT").replace(team, "TEAM"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
