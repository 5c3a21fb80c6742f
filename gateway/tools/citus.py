"""Distributes the schema when `make migrate` runs on a Citus coordinator.

On plain PostgreSQL (no `citus` extension in the database) nothing here runs.
On a coordinator, after the migrations and sql/:

- tables about an event live on their event's shard (distribution column the
  event id, all co-located with app.events); tables about an invite group on
  their group's shard (co-located with app.groups); notifications on their
  user's shard;
- small tables every call reads (profiles, friendships, rate limits) become
  reference tables, copied to every node;
- the rate limiter's counters and the audit log (by month, partitions kept)
  live on their user's shard, co-located with notifications;
- the lookup tables of codes, tokens and like-group ids are distributed by
  the value looked up (migration 0040);
- auth.users, the mail outbox, the webhook tables (migration 0031) and
  yoyo's own tables (schema joinery_migrations) stay on the coordinator (see
  docs/scaling.md for why);
- primary keys and unique constraints are widened to include the distribution
  column, foreign keys between co-located tables include it too, and foreign
  keys Citus cannot keep (to local tables, or not through the distribution
  column) are dropped;
- the API roles may log in on the workers only with a password the coordinator
  keeps in pg_dist_authinfo (reads under RLS open worker connections as the
  caller's role).

Every step checks first, so running it again changes nothing, and a table that
a newer migration adds is distributed by the next run once it is listed here.
"""

from __future__ import annotations

import os
import secrets

import psycopg
from psycopg import sql

# (table, distribution column, co-locate with: None starts a colocation group)
DISTRIBUTED: list[tuple[str, str, str | None]] = [
    ("app.events", "id", None),
    ("app.event_authors", "event_id", "app.events"),
    ("app.like_groups", "event_id", "app.events"),
    ("app.like_group_members", "event_id", "app.events"),
    ("app.like_group_approvals", "event_id", "app.events"),
    ("app.chats", "event_id", "app.events"),
    ("app.chat_participants", "event_id", "app.events"),
    ("app.registrations", "event_id", "app.events"),
    ("app.pair_invites", "event_id", "app.events"),
    ("app.pair_invite_tokens", "event_id", "app.events"),
    ("app.groups", "id", None),
    ("app.group_members", "group_id", "app.groups"),
    ("app.group_invites", "group_id", "app.groups"),
    ("app.notifications", "user_id", None),
    # Per user, beside their notifications: every counted call updates its
    # counter (one row per user and bucket, its primary key (user_id, bucket))
    # and writes an audit entry, on the caller's shard, not the coordinator. The
    # audit log keeps its monthly partitions (a distributed partitioned table;
    # a partition added later is distributed with it).
    ("app.rate_limit_counters", "user_id", "app.notifications"),
    ("app.audit_log", "actor_key", "app.notifications"),
    ("app.audit_refusals", "actor_id", "app.notifications"),
    # Lookup tables (migration 0040), each distributed by the value looked up,
    # so that a code, a token or a like-group id reads one shard
    # (docs/scaling.md, "Routing").
    ("app.group_invite_routes", "code_hash", None),
    ("app.pair_token_routes", "token_hash", "app.group_invite_routes"),
    ("app.pair_code_routes", "short_code", None),
    ("app.like_group_routes", "id", "app.events"),
]
REFERENCE = ["app.rate_limits", "app.profiles", "app.friendships"]
# Stay on the coordinator: auth.users (Supabase's or our stand-in, with the
# trigger that creates profiles), app.mail_outbox (one queue, SKIP LOCKED
# workers), and the small tables only operators and the mailer use. So do the
# webhook tables (migration 0031): like the mail outbox, one queue that the
# webhook workers lease with SKIP LOCKED, endpoints only service_role manages,
# events written by private.webhook_event, which the functions call from
# plpgsql on the coordinator (never inside a query that a worker runs), in the
# transaction of the change. And yoyo's own tables (schema joinery_migrations,
# migration 0016): only the migrating role on the coordinator uses them.
LOCAL = [
    "app.mail_outbox",
    "app.webhook_endpoints", "app.webhook_events", "app.webhook_deliveries",
    "app.webhook_attempts",
    "joinery_migrations._yoyo_log", "joinery_migrations._yoyo_migration",
    "joinery_migrations._yoyo_version", "joinery_migrations.yoyo_lock",
]

# Foreign keys that are not through the distribution column: dropped before
# distributing. Every key to auth.users goes too (found in the catalogue).
DROP_FOREIGN_KEYS = [
    ("app.group_members", "group_members_invite_id_fkey"),
    ("app.like_group_approvals", "like_group_approvals_group_id_fkey"),
    ("app.chats", "chats_like_group_id_fkey"),
    ("app.chat_participants", "chat_participants_chat_id_fkey"),
    ("app.pair_invite_tokens", "pair_invite_tokens_invite_id_fkey"),
]

# Keys widened to include the distribution column: (table, constraint, new definition).
# Names stay, so `on conflict on constraint ...` in sql/ works on both.
WIDEN_KEYS = [
    ("app.like_groups", "like_groups_pkey", "primary key (event_id, id)"),
    ("app.like_group_members", "like_group_members_pkey",
     "primary key (event_id, group_id, user_id)"),
    ("app.like_group_approvals", "like_group_approvals_pkey", "primary key (event_id, id)"),
    ("app.like_group_approvals", "like_group_approvals_one_per_author",
     "unique (group_id, author_id, event_id)"),
    ("app.chats", "chats_pkey", "primary key (event_id, id)"),
    ("app.chats", "chats_like_group_id_key", "unique (like_group_id, event_id)"),
    ("app.chat_participants", "chat_participants_pkey", "primary key (event_id, chat_id, user_id)"),
    ("app.registrations", "registrations_pkey", "primary key (event_id, id)"),
    ("app.pair_invites", "pair_invites_pkey", "primary key (event_id, id)"),
    ("app.pair_invites", "pair_invites_short_code_key", "unique (short_code, event_id)"),
    ("app.pair_invite_tokens", "pair_invite_tokens_pkey", "primary key (token_hash, event_id)"),
    ("app.group_invites", "group_invites_pkey", "primary key (group_id, id)"),
    ("app.group_invites", "group_invites_code_hash_key", "unique (code_hash, group_id)"),
    ("app.notifications", "notifications_pkey", "primary key (user_id, id)"),
    ("app.audit_log", "audit_log_pkey", "primary key (actor_key, id, created_at)"),
]

# Foreign keys between co-located tables, through the distribution column, added
# after distributing: (table, name, definition).
COLOCATED_FOREIGN_KEYS = [
    ("app.like_group_approvals", "like_group_approvals_group_fkey",
     "foreign key (group_id, event_id) references app.like_groups (id, event_id) "
     "on delete cascade"),
    ("app.chats", "chats_like_group_fkey",
     "foreign key (like_group_id, event_id) references app.like_groups (id, event_id) "
     "on delete cascade"),
    ("app.chat_participants", "chat_participants_chat_fkey",
     "foreign key (event_id, chat_id) references app.chats (event_id, id) on delete cascade"),
    ("app.pair_invite_tokens", "pair_invite_tokens_invite_fkey",
     "foreign key (event_id, invite_id) references app.pair_invites (event_id, id) "
     "on delete cascade"),
]

API_ROLES = ["anon", "authenticated", "service_role"]

# Part of the code hash on a coordinator: changing how sql/ is applied on Citus
# (policy_text, restrict_reads) changes it, so the next migrate rebuilds sql/.
CODE_VARIANT = "citus-2"


def is_coordinator(conn: psycopg.Connection) -> bool:
    """True on a Citus coordinator (the extension is in this database)."""
    if conn.execute("select 1 from pg_extension where extname = 'citus'").fetchone() is None:
        return False
    row = conn.execute("select citus_is_coordinator()").fetchone()
    return bool(row and row[0])


def policy_text(text: str) -> str:
    """Citus refuses subqueries in policies of distributed tables, so on a
    coordinator `(select auth.uid())` is written `auth.uid()` (a stable function:
    evaluated per shard scan instead of once per statement)."""
    return text.replace("(select auth.uid())", "auth.uid()")


# Tables whose policies call a helper that reads other rows (is the caller a
# member of this group? may they see this like group?). On a cluster the policy
# runs inside the shard's query on a worker, where the helper's own query would
# be a distributed query nested in a shard query, which Citus refuses (or, when
# allowed, runs outside the transaction). On a coordinator the API roles may not
# read these tables directly: 42501, where plain PostgreSQL applies the policy.
# The api functions answer the same questions (my_groups, group_members,
# get_like_group, my_chats, ...).
NO_DIRECT_READS = [
    "app.groups", "app.group_members", "app.group_invites",
    "app.like_groups", "app.like_group_members", "app.like_group_approvals",
    "app.chats", "app.chat_participants",
]


def restrict_reads(conn: psycopg.Connection) -> None:
    """Runs after sql/policies on a coordinator, in the same transaction."""
    for table in NO_DIRECT_READS:
        conn.execute(sql.SQL("revoke select on {} from anon, authenticated").format(sql.SQL(table)))


def _placed(conn: psycopg.Connection, table: str) -> str | None:
    """'h' (hash-distributed), 'n' (reference) or None (local) for a table."""
    row = conn.execute(
        "select partmethod::text from pg_dist_partition where logicalrelid = %s::regclass",
        (table,)).fetchone()
    return row[0] if row else None


def _constraint_def(conn: psycopg.Connection, table: str, name: str) -> str | None:
    row = conn.execute(
        "select pg_get_constraintdef(oid) from pg_constraint "
        "where conrelid = %s::regclass and conname = %s", (table, name)).fetchone()
    return row[0] if row else None


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("select to_regclass(%s)", (table,)).fetchone() != (None,)


def prepare_constraints(conn: psycopg.Connection) -> list[str]:
    """Drops the foreign keys Citus cannot keep and widens keys; only on tables
    that are still local. Returns what it did."""
    done: list[str] = []
    local = {t for t, _, _ in DISTRIBUTED if _exists(conn, t) and _placed(conn, t) is None}
    local |= {t for t in REFERENCE if _exists(conn, t) and _placed(conn, t) is None}
    to_users = conn.execute(
        "select conrelid::regclass::text, conname from pg_constraint "
        "where contype = 'f' and confrelid = 'auth.users'::regclass "
        "and connamespace = 'app'::regnamespace order by 1, 2").fetchall()
    for table, name in [*to_users, *DROP_FOREIGN_KEYS]:
        if table in local and _constraint_def(conn, table, name) is not None:
            conn.execute(sql.SQL("alter table {} drop constraint {}").format(
                sql.SQL(table), sql.Identifier(name)))
            done.append(f"dropped {table}.{name}")
    for table, name, definition in WIDEN_KEYS:
        if table not in local:
            continue
        current = _constraint_def(conn, table, name)
        if current is not None and current.lower() == definition.lower():
            continue
        if current is not None:
            conn.execute(sql.SQL("alter table {} drop constraint {}").format(
                sql.SQL(table), sql.Identifier(name)))
        conn.execute(sql.SQL("alter table {} add constraint {} {}").format(
            sql.SQL(table), sql.Identifier(name), sql.SQL(definition)))
        done.append(f"{table}.{name}: {definition}")
    return done


def distribute_tables(conn: psycopg.Connection, shard_count: int) -> list[str]:
    done: list[str] = []
    # The audit log's append-only triggers go with it to its shards (they only
    # raise); Citus distributes a table with triggers only when told so.
    conn.execute("set citus.enable_unsafe_triggers = on")
    for table in REFERENCE:
        if _exists(conn, table) and _placed(conn, table) is None:
            conn.execute("select create_reference_table(%s)", (table,))
            done.append(f"{table}: reference")
    for table, column, colocate in DISTRIBUTED:
        if not _exists(conn, table) or _placed(conn, table) is not None:
            continue
        conn.execute(
            "select create_distributed_table(%s, %s, colocate_with => %s, shard_count => %s)"
            if colocate is None else
            "select create_distributed_table(%s, %s, colocate_with => %s)",
            (table, column, "none", shard_count) if colocate is None else (table, column, colocate))
        done.append(f"{table}: by {column}" + (f" with {colocate}" if colocate else ""))
    for table, name, definition in COLOCATED_FOREIGN_KEYS:
        if _exists(conn, table) and _constraint_def(conn, table, name) is None:
            conn.execute(sql.SQL("alter table {} add constraint {} {}").format(
                sql.SQL(table), sql.Identifier(name), sql.SQL(definition)))
            done.append(f"{table}.{name}")
    return done


def worker_roles(conn: psycopg.Connection) -> list[str]:
    """The API roles may log in on the workers, with a password only the coordinator
    holds (pg_dist_authinfo, readable by superusers only); on the coordinator they
    stay NOLOGIN. Citus copies roles as the coordinator has them to a node it adds,
    so this runs on every migrate (and must run after adding a node)."""
    done: list[str] = []
    for role in API_ROLES:
        row = conn.execute(
            "select authinfo from pg_dist_authinfo where nodeid = 0 and rolename = %s",
            (role,)).fetchone()
        if row is None:
            password = secrets.token_urlsafe(32)
            conn.execute(
                "insert into pg_dist_authinfo (nodeid, rolename, authinfo) values (0, %s, %s)",
                (role, f"password={password}"))
            done.append(f"{role}: worker password created")
        else:
            password = str(row[0]).removeprefix("password=")
        command = sql.SQL(
            "set citus.enable_ddl_propagation to off; "
            "alter role {role} with login password {password}"
        ).format(role=sql.Identifier(role), password=sql.Literal(password)).as_string(conn)
        results = conn.execute(
            "select nodename, nodeport, success, result "
            "from run_command_on_workers(%s)", (command,)).fetchall()
        failed = [f"{h}:{p}: {r}" for h, p, ok, r in results if not ok]
        if failed:
            raise RuntimeError(f"could not set up role {role} on workers: {failed}")
    # The request's claims reach the workers when a client sets them with SET LOCAL
    # (reads under RLS evaluate auth.uid() on the workers).
    dbname = conn.execute("select current_database()").fetchone()
    assert dbname is not None
    # A query that reads every shard (a lookup by code, token or like-group id)
    # uses one connection per worker, not up to 16: with many concurrent requests
    # that keeps the workers' connection count near the gateway's pool size.
    # Triggers on distributed tables (the audit log's) may be made again by a
    # later rebuild of sql/ when their statement changes.
    # A worker that does not answer costs a call at most 5 s to find out (Citus's
    # default is 30 s, longer than the gateway's statement timeout): the call
    # then fails with 08006, answered 503 with Retry-After, and calls on the
    # other workers go on.
    for name, value in (("citus.propagate_set_commands", "local"),
                        ("citus.max_adaptive_executor_pool_size", "1"),
                        ("citus.enable_unsafe_triggers", "on"),
                        ("citus.node_connection_timeout", "5000")):
        current = conn.execute(
            "select 1 from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase "
            "where d.datname = current_database() and s.setrole = 0 "
            "and %s = any (s.setconfig)", (f"{name}={value}",)).fetchone()
        if current is None:
            conn.execute(sql.SQL("alter database {} set {} = {}").format(
                sql.Identifier(dbname[0]), sql.SQL(name), sql.Literal(value)))
            done.append(f"{name} = {value}")
    return done


def distribute(conn: psycopg.Connection) -> list[str]:
    """The whole Citus step of `make migrate`; a no-op off a coordinator."""
    if not is_coordinator(conn):
        return []
    shard_count = int(os.environ.get("CITUS_SHARD_COUNT", "") or 32)
    done: list[str] = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(7311402222)")
        done += prepare_constraints(conn)
    # create_distributed_table moves data in its own steps; one table at a time.
    done += distribute_tables(conn, shard_count)
    done += worker_roles(conn)
    return done
