"""The schema on a Citus cluster: where every table lives, migrate run again,
the API roles on the workers, and a scan of what a stranger can read directly.
Skipped unless DATABASE_URL is a Citus coordinator (`make test-citus`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from citus_support import as_role, reading_as, require_citus, worker_urls

from conftest import ROOT, User
from gateway.tools.citus import DISTRIBUTED, LOCAL, NO_DIRECT_READS, REFERENCE


@pytest.fixture(autouse=True)
def _citus(database_url: str) -> None:
    require_citus(database_url)


def test_tables_are_placed_as_declared(admin: psycopg.Connection) -> None:
    rows = admin.execute("""
        select logicalrelid::regclass::text, partmethod::text,
               column_to_column_name(logicalrelid, partkey), colocationid
        from pg_dist_partition where logicalrelid::regclass::text like 'app.%'""").fetchall()
    placed = {table: (method, column, colocation) for table, method, column, colocation in rows}
    for table in REFERENCE:
        assert placed[table][0] == "n", table
    for table, column, colocate in DISTRIBUTED:
        method, actual, colocation = placed[table]
        assert (method, actual) == ("h", column), table
        if colocate is not None:
            assert colocation == placed[colocate][2], (table, colocate)
    families = {placed[t][2] for t in ("app.events", "app.groups", "app.notifications")}
    assert len(families) == 3
    # Local to the coordinator: the queues (mail, webhooks) and yoyo's tables.
    local = set(admin.execute(
        "select logicalrelid::regclass::text from pg_dist_partition").fetchall())
    for table in LOCAL:
        assert (table,) not in local, table
        assert admin.execute("select to_regclass(%s)", (table,)).fetchone() != (None,), table
    # Per-user writes of every counted call live on the user's shard.
    for table in ("app.audit_log", "app.rate_limit_counters", "app.audit_refusals"):
        assert placed[table][2] == placed["app.notifications"][2], table
    partitions = admin.execute("""
        select count(*) filter (where d.logicalrelid is null), count(*)
        from pg_inherits i left join pg_dist_partition d on d.logicalrelid = i.inhrelid
        where i.inhparent = 'app.audit_log'::regclass""").fetchone()
    assert partitions is not None and partitions[0] == 0 and partitions[1] >= 2
    # Every shard of the event family sits on a worker, and both workers hold some.
    nodes = admin.execute("""
        select count(distinct p.nodename || ':' || p.nodeport)
        from pg_dist_shard s join pg_dist_shard_placement p using (shardid)
        where s.logicalrelid = 'app.events'::regclass""").fetchone()
    assert nodes is not None and nodes[0] >= 2


def test_keys_include_the_distribution_column(admin: psycopg.Connection) -> None:
    bad = admin.execute("""
        select c.conrelid::regclass::text, c.conname
        from pg_constraint c
        join pg_dist_partition d on d.logicalrelid = c.conrelid and d.partmethod = 'h'
        where c.contype in ('p', 'u')
          and not (column_to_column_name(d.logicalrelid, d.partkey) = any (
              select a.attname from pg_attribute a
              where a.attrelid = c.conrelid and a.attnum = any (c.conkey)))""").fetchall()
    assert bad == []


def test_migrate_again_changes_nothing(database_url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "migrate"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 migration(s) applied; sql/ unchanged"


def test_api_roles_have_no_new_way_in(database_url: str, admin: psycopg.Connection) -> None:
    rows = admin.execute("""select rolname, rolcanlogin from pg_roles
        where rolname in ('anon', 'authenticated', 'service_role') order by 1""").fetchall()
    assert rows == [("anon", False), ("authenticated", False), ("service_role", False)]
    secret = admin.execute("""select authinfo from pg_dist_authinfo
        where nodeid = 0 and rolename = 'authenticated'""").fetchone()
    assert secret is not None and str(secret[0]).startswith("password=")
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(as_role(database_url, "authenticated"), connect_timeout=5)
    for url in worker_urls():
        # Without the coordinator's password: refused; authenticator: refused outright.
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(as_role(url, "authenticated", ""), connect_timeout=5)
        with pytest.raises(psycopg.OperationalError, match="rejects connection"):
            psycopg.connect(as_role(url, "authenticator"), connect_timeout=5)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(as_role(url, "service_role", "guess"), connect_timeout=5)
        # With it (which only a superuser of the coordinator can read): allowed.
        password = str(secret[0]).removeprefix("password=")
        with psycopg.connect(as_role(url, "authenticated", password), connect_timeout=5) as conn:
            assert conn.execute("select current_user").fetchone() == ("authenticated",)
    # The authinfo catalogue is closed to the API roles.
    with psycopg.connect(database_url) as conn:
        conn.execute("set local role authenticated")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from pg_dist_authinfo")


def post(client: httpx.Client, path: str, user: User, **body: Any) -> Any:
    response = client.post(path, json=body, headers=user.headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_rls_leak_scan(database_url: str, client: httpx.Client,
                       make_user: Callable[..., User]) -> None:
    """A stranger reads none of another person's rows directly; the owner reads
    their own (so the policies run on the workers, not merely hide everything)."""
    owner, friend, host, stranger = make_user("Owner"), make_user(), make_user(), make_user()
    group = post(client, "/rest/v1/rpc/create_group", owner, name="Secret club")
    post(client, f"/api/groups/{group['id']}/invite", owner, max_uses=3)
    event = post(client, "/rest/v1/rpc/create_event", host, title="Party", capacity=10)
    post(client, "/rest/v1/rpc/register_for_event", owner, event_id=event["id"])
    post(client, f"/api/events/{event['id']}/invite", friend, invitee_email=owner.email)
    post(client, "/rest/v1/rpc/request_friend", owner, user_id=friend.id)
    post(client, "/rest/v1/rpc/accept_friend", friend, user_id=owner.id)
    like = post(client, f"/events/{event['id']}/like", owner, memberIds=[friend.id])
    post(client, f"/groups/{like['id']}/approve", host)  # a chat and notifications

    readable = {
        "app.registrations": "user_id", "app.notifications": "user_id",
        "app.pair_invites": "inviter_id", "app.friendships": "requester_id",
        "app.profiles": "id", "app.audit_log": "actor_id",
    }
    for table, column in readable.items():
        who = friend if table == "app.pair_invites" else owner
        with reading_as(database_url, who.id) as conn:
            mine = conn.execute(f"select count(*) from {table}").fetchone()
        with reading_as(database_url, stranger.id) as conn:
            seen = conn.execute(
                f"select count(*) from {table} where {column} = %s", (who.id,)).fetchone()
        assert mine is not None and mine[0] >= 1, table
        assert seen == (0,), table
    # Events are public to signed-in users, as on plain PostgreSQL.
    with reading_as(database_url, stranger.id) as conn:
        assert conn.execute("select count(*) from app.events where id = %s",
                            (event["id"],)).fetchone() == (1,)
    # Tables whose policies need a nested distributed query: no direct read at all.
    for table in NO_DIRECT_READS:
        for who in (stranger, owner):
            with (reading_as(database_url, who.id) as conn,
                  pytest.raises(psycopg.errors.InsufficientPrivilege)):
                conn.execute(f"select * from {table}")
    # ... and the api functions answer the owner and refuse the stranger.
    assert client.get(f"/groups/{like['id']}", headers=owner.headers).status_code == 200
    assert client.get(f"/groups/{like['id']}", headers=stranger.headers).status_code == 403
    members = client.post("/rest/v1/rpc/group_members", json={"group_id": group["id"]},
                          headers=stranger.headers)
    assert members.status_code == 403, members.text


def test_older_schema_came_forward(admin: psycopg.Connection) -> None:
    """Rows written under the schema before 0010 (tests/citus_old_schema.py, run by
    `make test-citus` before the first migrate) carry their event and were moved
    onto the shards."""
    from citus_old_schema import CHAT, EVENT, INVITE, LIKE_GROUP, USER

    if admin.execute("select 1 from auth.users where id = %s", (USER,)).fetchone() is None:
        pytest.skip("the older schema was not loaded before migrating")
    rows = admin.execute("""
        select (select event_id::text from app.like_group_approvals where group_id = %(g)s),
               (select event_id::text from app.chats where id = %(c)s),
               (select event_id::text from app.chat_participants where chat_id = %(c)s),
               (select event_id::text from app.pair_invite_tokens where invite_id = %(i)s)""",
        {"g": LIKE_GROUP, "c": CHAT, "i": INVITE}).fetchone()
    assert rows == (EVENT, EVENT, EVENT, EVENT)
    # The event's row now lives on a worker's shard.
    placed = admin.execute("""
        select n.groupid from pg_dist_shard_placement p
        join pg_dist_node n on n.nodename = p.nodename and n.nodeport = p.nodeport
        where p.shardid = get_shard_id_for_distribution_column('app.events', %s::uuid)""",
        (EVENT,)).fetchall()
    assert len(placed) == 1 and placed[0][0] > 0
    assert admin.execute("select title from app.events where id = %s",
                         (EVENT,)).fetchone() == ("Old",)


def test_prune_runs_on_the_cluster(database_url: str, admin: psycopg.Connection) -> None:
    """`prune` on a coordinator: a rate-limit counter whose bucket's window has
    closed goes (its delete reaches every shard with a value as the cutoff), an
    open one stays, and the audit and retention steps run too."""
    import re
    import uuid

    from gateway.tools.audit import prune

    closed, open_ = uuid.uuid4(), uuid.uuid4()
    admin.execute(
        "insert into app.rate_limit_counters (user_id, bucket, window_start, hits) values "
        "(%s, 'join_code', now() - interval '61 seconds', 3), "
        "(%s, 'join_code', now() - interval '5 seconds', 3)", (closed, open_))
    lines = prune(database_url, 100)
    assert any(re.fullmatch(r"deleted \d+ stale rate-limit counters", line)
               for line in lines), lines
    left = admin.execute("select user_id from app.rate_limit_counters where user_id = any(%s)",
                         ([closed, open_],)).fetchall()
    assert left == [(open_,)]
