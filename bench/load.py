"""Databases for the benchmark: one per size, migrated, loaded with set-based SQL as
superuser, rate limits raised, vacuumed and analysed.

Rows are inserted with session_replication_role = replica, which skips triggers:
foreign-key checks and the profile trigger of auth.users (profiles are inserted
here). The numbering (bench/layout.py) keeps every key consistent; `check_keys`
verifies the foreign keys afterwards when asked (`--check-keys`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gateway.tools.migrate import migrate

from . import layout as L
from .layout import Layout

UID = "md5('bench-user-' || ({}))::uuid"


def uid(expr: str) -> str:
    return UID.format(expr)


def database_url(server_url: str, name: str) -> str:
    params = conninfo_to_dict(server_url)
    params["dbname"] = name
    return make_conninfo(**params)


def create_database(server_url: str, name: str) -> str:
    """A new, migrated database `name` on the server of server_url; returns its URL."""
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}"')
        conn.execute(f'create database "{name}"')
    url = database_url(server_url, name)
    migrate(url)
    return url


def tune_server(server_url: str) -> None:
    """Fewer checkpoints while loading; these clusters are throwaway."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("alter system set max_wal_size = '8GB'")
        conn.execute("alter system set checkpoint_timeout = '30min'")
        conn.execute("select pg_reload_conf()")


def load_statements(s: Layout) -> list[tuple[str, str]]:
    """(label, SQL) in load order."""
    U, NG, EH, H, ER = s.users, s.groups, s.like_events, s.like_groups, s.reg_events
    EP, P, AP = L.PENDING_EVENTS, L.PENDING_GROUPS, L.PENDING_AUTHORS
    EA, AI, N = L.ACCEPT_EVENTS, L.ACCEPT_INVITES, s.rows
    race = 2 * L.RACE_ROUNDS * L.RACE_USERS
    ev = "md5('bench-event-' || ({}))::uuid".format
    grp = "md5('bench-group-' || ({}))::uuid".format
    lg = "md5('bench-lg-' || ({}))::uuid".format
    code = "md5('bench-code-' || ({}))::uuid::text".format
    users = " union all ".join([
        f"select generate_series(1, {U})",
        f"select generate_series({L.HISTORIC_AUTHOR_BASE}, {L.HISTORIC_AUTHOR_BASE + 2 * EH - 1})",
        f"select generate_series({L.PENDING_AUTHOR_BASE}, {L.PENDING_AUTHOR_BASE + AP * EP - 1})",
        f"select generate_series({L.PENDING_MEMBER_BASE}, "
        f"{L.PENDING_MEMBER_BASE + L.pending_members() - 1})",
        f"select {L.ORGANIZER}",
        f"select generate_series({L.FRESH_BASE}, {L.FRESH_BASE + L.FRESH_USERS - 1})",
        f"select generate_series({L.RACE_BASE}, {L.RACE_BASE + L.RACE_ROUNDS * L.RACE_USERS - 1})",
        f"select generate_series({L.BASELINE_RACE_BASE}, "
        f"{L.BASELINE_RACE_BASE + race // 2 - 1})",
    ])
    invite_case = """
        case when j = 0 then null when j between 4 and 6 then 5 when j = 9 then 100 end,
        case when j between 4 and 6 then 5 when j = 9 then 3 else 0 end,
        case when j between 1 and 3 then now() - interval '1 day' end,
        case when j between 7 and 8 then now() - interval '2 days' end"""
    race_rounds = f"generate_series(0, {L.RACE_ROUNDS - 1})"
    short_code = (
        "(select string_agg(substr('" + L.SHORT_CODE_ALPHABET + "', "
        "((a::bigint / power(31, k)::bigint) % 31)::int + 1, 1), '' order by k) "
        "from generate_series(0, 7) k)")
    return [
        ("users", f"""
            insert into auth.users (id, email, created_at)
            select {uid('n')}, 'b' || n || '@bench.test', now() - interval '60 days'
            from ({users}) s(n);
            insert into app.profiles (id, display_name)
            select u.id, split_part(u.email, '@', 1) from auth.users u
            where u.email like '%@bench.test'"""),
        ("groups", f"""
            insert into app.groups (id, name, creator_id, created_at, member_count)
            select {grp('g')}, 'Group ' || g, {uid(f'(g * 10) % {U} + 1')},
                   now() - interval '30 days', 10
            from generate_series(0, {NG - 1}) g;
            insert into app.groups (id, name, creator_id, member_count)
            select {grp(f'{L.RACE_GROUP_BASE} + r')}, 'Race ' || r, {uid('1')}, 1
            from {race_rounds} r
            union all
            select {grp(f'{L.RACE_GROUP_BASE + 100_000} + r')}, 'Baseline race ' || r,
                   {uid('1')}, 1
            from {race_rounds} r;
            insert into app.group_members (group_id, user_id, role, created_at)
            select {grp('g')}, {uid(f'(g * 10 + m) % {U} + 1')},
                   case m when 0 then 'owner' else 'member' end,
                   now() - interval '30 days' + m * interval '1 hour'
            from generate_series(0, {NG - 1}) g, generate_series(0, 9) m;
            insert into app.group_members (group_id, user_id, role)
            select {grp(f'{L.RACE_GROUP_BASE} + r')}, {uid('1')}, 'owner' from {race_rounds} r
            union all
            select {grp(f'{L.RACE_GROUP_BASE + 100_000} + r')}, {uid('1')}, 'owner'
            from {race_rounds} r"""),
        ("group invites", f"""
            insert into app.group_invites (id, group_id, created_by, code_hash, code_hint,
                                           max_uses, use_count, expires_at, revoked_at)
            select md5('bench-inv-' || v)::uuid, {grp('g')}, {uid(f'(g * 10) % {U} + 1')},
                   sha256(convert_to({code('v')}, 'UTF8')), right({code('v')}, 4), {invite_case}
            from generate_series(0, {NG - 1}) g, generate_series(0, 9) j,
                 lateral (select g * 10 + j as v) x;
            insert into app.group_invites (id, group_id, created_by, code_hash, code_hint,
                                           max_uses)
            select md5('bench-inv-' || v)::uuid, {grp('g')}, {uid('1')},
                   sha256(convert_to({code('v')}, 'UTF8')), right({code('v')}, 4),
                   {L.RACE_MAX_USES}
            from {race_rounds} r,
                 lateral (values ({L.RACE_INVITE_BASE} + r, {L.RACE_GROUP_BASE} + r),
                                 ({L.RACE_INVITE_BASE + 1_000_000} + r,
                                  {L.RACE_GROUP_BASE + 100_000} + r)) x(v, g)"""),
        ("events", f"""
            insert into app.events (id, creator_id, title, status, capacity)
            select {ev('e')}, {uid(f'{L.HISTORIC_AUTHOR_BASE} + 2 * e')}, 'Event ' || e,
                   'open', null::integer
            from generate_series(0, {EH - 1}) e
            union all
            select {ev(f'{L.PENDING_EVENT_BASE} + e')},
                   {uid(f'{L.PENDING_AUTHOR_BASE} + {AP} * e')}, 'Pending event ' || e,
                   'open', null::integer
            from generate_series(0, {EP - 1}) e
            union all
            select {ev(f'{L.REG_EVENT_BASE} + e')}, {uid(str(L.ORGANIZER))},
                   'Registration event ' || e, 'open', 1000
            from generate_series(0, {ER - 1}) e
            union all
            select {ev(f'{L.ACCEPT_EVENT_BASE} + e')}, {uid(str(L.ORGANIZER))},
                   'Pair event ' || e, 'open', 1000000
            from generate_series(0, {EA - 1}) e;
            insert into app.event_authors (event_id, user_id)
            select {ev('e')}, {uid(f'{L.HISTORIC_AUTHOR_BASE} + 2 * e + k')}
            from generate_series(0, {EH - 1}) e, generate_series(0, 1) k
            union all
            select {ev(f'{L.PENDING_EVENT_BASE} + e')},
                   {uid(f'{L.PENDING_AUTHOR_BASE} + {AP} * e + k')}
            from generate_series(0, {EP - 1}) e, generate_series(0, {AP - 1}) k
            union all
            select {ev(f'{L.REG_EVENT_BASE} + e')}, {uid(str(L.ORGANIZER))}
            from generate_series(0, {ER - 1}) e
            union all
            select {ev(f'{L.ACCEPT_EVENT_BASE} + e')}, {uid(str(L.ORGANIZER))}
            from generate_series(0, {EA - 1}) e"""),
        ("like groups", f"""
            insert into app.like_groups (id, event_id, creator_id, status, decided_at,
                                         created_at)
            select {lg('h')}, {ev(f'h % {EH}')}, {uid(f'(h * 2) % {U} + 1')}, 'approved',
                   now() - interval '10 days', now() - interval '20 days'
            from generate_series(0, {H - 1}) h
            union all
            select {lg(f'{L.PENDING_GROUP_BASE} + p')}, {ev(f'{L.PENDING_EVENT_BASE} + p % {EP}')},
                   {uid(f'{L.PENDING_MEMBER_BASE} + (p / {EP}) * 10')}, 'pending', null, now()
            from generate_series(0, {P - 1}) p;
            insert into app.like_group_members (group_id, event_id, user_id, pending, created_at)
            select {lg('h')}, {ev(f'h % {EH}')}, {uid(f'(h * 2 + m) % {U} + 1')}, false,
                   now() - interval '20 days' + m * interval '1 minute'
            from generate_series(0, {H - 1}) h, generate_series(0, 1) m
            union all
            select {lg(f'{L.PENDING_GROUP_BASE} + p')}, {ev(f'{L.PENDING_EVENT_BASE} + p % {EP}')},
                   {uid(f'{L.PENDING_MEMBER_BASE} + (p / {EP}) * 10 + m')}, true,
                   now() + m * interval '1 second'
            from generate_series(0, {P - 1}) p, generate_series(0, 9) m;
            insert into app.chats (type, like_group_id, event_id, created_at)
            select 'approved_group', {lg('h')}, {ev(f'h % {EH}')}, now() - interval '10 days'
            from generate_series(0, {H - 1}) h;
            insert into app.like_group_approvals (group_id, event_id, author_id, approved,
                                                  created_at)
            select {lg('h')}, {ev(f'h % {EH}')},
                   {uid(f'{L.HISTORIC_AUTHOR_BASE} + 2 * (h % {EH}) + k')}, true,
                   now() - interval '15 days'
            from generate_series(0, {H - 1}) h, generate_series(0, 1) k"""),
        ("registrations", f"""
            insert into app.registrations (event_id, user_id, created_at)
            select {ev(f'{L.REG_EVENT_BASE} + (r % {U} + r / {U}) % {ER}')},
                   {uid(f'r % {U} + 1')}, now() - interval '5 days'
            from generate_series(0, {N - 1}) r;
            update app.events e set seats_taken = c.n
            from (select event_id, count(*)::int n from app.registrations group by 1) c
            where e.id = c.event_id"""),
        ("pair invites", f"""
            insert into app.pair_invites (id, event_id, inviter_id, short_code, expires_at)
            select md5('bench-pinv-' || a)::uuid, {ev(f'{L.ACCEPT_EVENT_BASE} + a % {EA}')},
                   {uid(f'(a / {EA}) % {U} + 1')}, {short_code}, now() + interval '30 days'
            from generate_series(0, {AI - 1}) a;
            insert into app.pair_invite_tokens (token_hash, invite_id, issued_to, event_id)
            select sha256(convert_to('bench-token-' || a, 'UTF8')), md5('bench-pinv-' || a)::uuid,
                   {uid(f'{L.FRESH_BASE} + a')}, {ev(f'{L.ACCEPT_EVENT_BASE} + a % {EA}')}
            from generate_series(0, {AI - 1}) a"""),
        # What the functions write beside each row (migration 0040): the lookups
        # by code, token and like-group id read these.
        ("routes", """
            insert into app.group_invite_routes (code_hash, group_id)
            select code_hash, group_id from app.group_invites on conflict do nothing;
            insert into app.pair_code_routes (short_code, event_id)
            select short_code, event_id from app.pair_invites on conflict do nothing;
            insert into app.pair_token_routes (token_hash, event_id)
            select token_hash, event_id from app.pair_invite_tokens on conflict do nothing;
            insert into app.like_group_routes (id, event_id)
            select id, event_id from app.like_groups on conflict do nothing"""),
        ("rate limits", "update app.rate_limits set max_attempts = 1000000000"),
    ]


def load(url: str, s: Layout, log: Callable[[str], None]) -> float:
    """Loads layout `s` into the migrated database at url; returns seconds taken."""
    start = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("set local session_replication_role = replica")
            conn.execute("set local maintenance_work_mem = '512MB'")
            conn.execute("set local work_mem = '256MB'")
            for label, statement in load_statements(s):
                t0 = time.monotonic()
                conn.execute(statement)
                log(f"  loaded {label} ({time.monotonic() - t0:.1f}s)")
        t0 = time.monotonic()
        conn.execute("vacuum (analyze)")
        log(f"  vacuum analyze ({time.monotonic() - t0:.1f}s)")
        prewarm(conn, log)
    return time.monotonic() - start


def prewarm(conn: psycopg.Connection, log: Callable[[str], None]) -> None:
    """Reads every table and index of the schema into shared buffers (pg_prewarm),
    as a server in steady state holds its working set: at 1 M rows the data
    (about 2 GB) would otherwise come from the operating system's cache page by page
    during the first runs, while at 10 k it is all in shared buffers from the load.
    Only what fits: with the default 256 MB of a development cluster, part of it.
    `make bench` gives the cluster a quarter of the machine's memory."""
    t0 = time.monotonic()
    try:
        conn.execute("create extension if not exists pg_prewarm")
    except psycopg.Error as exc:
        log(f"  prewarm skipped: {exc.diag.message_primary}")
        return
    row = conn.execute(
        "select coalesce(sum(pg_prewarm(c.oid)), 0), current_setting('shared_buffers') "
        "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname in ('app', 'auth') and c.relkind in ('r', 'i') "
        "and c.relpersistence = 'p'").fetchone()
    assert row is not None
    log(f"  prewarmed {int(row[0]) * 8 // 1024} MB into shared_buffers of {row[1]} "
        f"({time.monotonic() - t0:.1f}s)")


def table_rows(url: str) -> dict[str, int]:
    tables = ["app.group_members", "app.group_invites", "app.registrations",
              "app.like_group_approvals", "app.like_group_members", "app.like_groups",
              "app.pair_invites", "auth.users"]
    with psycopg.connect(url, autocommit=True) as conn:
        return {t: int(conn.execute(f"select count(*) from {t}").fetchone()[0])  # type: ignore[index]
                for t in tables}


def check_keys(url: str) -> list[str]:
    """Foreign keys of app tables that some loaded row breaks (none expected)."""
    query = """
        select c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text,
               (select string_agg(quote_ident(a.attname), ',' order by k.n)
                from unnest(c.conkey) with ordinality k(att, n)
                join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.att),
               (select string_agg(quote_ident(a.attname), ',' order by k.n)
                from unnest(c.confkey) with ordinality k(att, n)
                join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.att)
        from pg_constraint c
        where c.contype = 'f' and c.connamespace in ('app'::regnamespace, 'auth'::regnamespace)
    """
    broken: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for name, child, parent, cols, pcols in conn.execute(query).fetchall():
            first = cols.split(",")[0]
            row = conn.execute(
                f"select count(*) from {child} c where {first} is not null and not exists "
                f"(select from {parent} p where ({', '.join('p.' + x for x in pcols.split(','))})"
                f" = ({', '.join('c.' + x for x in cols.split(','))}))").fetchone()
            if row and row[0]:
                broken.append(f"{name}: {row[0]} rows of {child}")
    return broken
