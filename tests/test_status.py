"""`python -m gateway status`: on a database of its own, with known audit entries,
refusals and mail, the exact screen and the exact JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import ROOT
from gateway.tools.migrate import migrate

# The migrations a fresh database gets: status shows the highest id and the count.
MIGRATIONS = sorted(p.stem for p in (ROOT / "migrations").glob("[0-9]*.sql")
                    if not p.name.endswith(".rollback.sql"))
LATEST, APPLIED = MIGRATIONS[-1], len(MIGRATIONS)
OUTAGE = "not recorded in the database (see joinery_database_outages_total and the log)"


@pytest.fixture(scope="module")
def url(database_url: str) -> Iterator[str]:
    name = f"joinery_status_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(database_url)
    params["dbname"] = name
    scratch = make_conninfo(**params)
    try:
        migrate(scratch)
        yield scratch
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def status(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "status", *args], cwd=ROOT,
                          env={**os.environ, "DATABASE_URL": url},
                          capture_output=True, text=True, timeout=60)


def code_mark(conn: psycopg.Connection) -> str:
    row = conn.execute("select obj_description('api'::regnamespace, 'pg_namespace')").fetchone()
    assert row is not None
    return str(row[0])


def applied_at(conn: psycopg.Connection) -> str:
    row = conn.execute("select max(applied_at_utc) filter (where migration_id = %s), "
                       "count(*) from joinery_migrations._yoyo_migration", (LATEST,)).fetchone()
    assert row is not None and row[1] == APPLIED
    return row[0].isoformat(timespec="seconds") + "Z"


def partitions_through(conn: psycopg.Connection) -> str:
    """The end of the last monthly audit partition: migrate makes this month's and
    the next three."""
    row = conn.execute(
        "select to_char(date_trunc('month', now() at time zone 'UTC') + interval '4 months', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')").fetchone()
    assert row is not None
    return str(row[0])


def test_empty_database(url: str) -> None:
    done = status(url)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(url) as conn:
        mark, at = code_mark(conn), applied_at(conn)
        through = partitions_through(conn)
    assert done.stdout.splitlines() == [
        f"migration:     {LATEST} ({APPLIED} applied, last at {at})",
        f"sql code:      {mark}",
        "mail queue:    0 queued, 0 failed",
        "webhooks:      0 pending, 0 failed",
        "audit, last hour: none",
        f"audit partitions: through {through}, 0 rows in the default partition",
        "notify queue:  0.00% in use",
        "most refused by rate limits, last day: none",
        f"last outage:   {OUTAGE}",
    ]


def test_with_activity(url: str) -> None:
    a, b, c = sorted(str(uuid.uuid4()) for _ in range(3))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into app.audit_log (actor_id, action, outcome, status, created_at) "
            "select %s, x.action, 'ok', 200, now() - x.age from (values "
            "('group.join', interval '1 minute'), ('group.join', interval '59 minutes'), "
            "('group.join', interval '2 minutes'), ('pair_invite.accept', interval '3 minutes'), "
            "('group.leave', interval '61 minutes')) x(action, age)", (a,))
        conn.execute(
            "insert into app.audit_refusals (actor_id, action, outcome, window_start, refused, "
            "last_at) values "
            "(%(a)s, 'group.join', 'rate_limited', now() - interval '1 minute', 4, now()), "
            "(%(a)s, 'pair_invite.join', 'rate_limited', now() - interval '2 hours', 3, "
            " now() - interval '2 hours'), "
            "(%(b)s, 'group.join', 'rate_limited', now() - interval '5 minutes', 9, now()), "
            "(%(c)s, 'group.join', 'rate_limited', now() - interval '3 days', 50, "
            " now() - interval '3 days')", {"a": a, "b": b, "c": c})
        conn.execute(
            "insert into app.mail_outbox (to_email, template, attempts, failed_at) values "
            "('q1@example.com', 'pair_invite', 0, null), "
            "('q2@example.com', 'pair_invite', 1, null), "
            "('f@example.com', 'pair_invite', 8, '2026-01-02T03:04:05Z'), "
            "('s@example.com', 'pair_invite', 1, null)")
        conn.execute("update app.mail_outbox set sent_at = now() where to_email = 's@example.com'")
        # Webhooks: pending to an enabled endpoint counts, to a disabled one not;
        # failed counts whatever the endpoint; delivered never.
        conn.execute(
            "insert into app.webhook_endpoints (id, url, event_types, enabled, secret) values "
            "('e0000000-0000-4000-8000-000000000001', 'https://a.example.com/', "
            " '{group.member_joined}', true, decode(repeat('ab', 32), 'hex')), "
            "('e0000000-0000-4000-8000-000000000002', 'https://b.example.com/', "
            " '{group.member_joined}', false, decode(repeat('ab', 32), 'hex'))")
        conn.execute(
            "insert into app.webhook_events (id, type, data) select "
            "('e1000000-0000-4000-8000-00000000000' || n)::uuid, 'group.member_joined', '{}' "
            "from generate_series(1, 5) n")
        conn.execute(
            "insert into app.webhook_deliveries (event_id, endpoint_id, status, failed_at) "
            "select ('e1000000-0000-4000-8000-00000000000' || x.n)::uuid, "
            "('e0000000-0000-4000-8000-00000000000' || x.e)::uuid, x.status, x.failed_at "
            "from (values (1, 1, 'pending', null::timestamptz), (2, 1, 'pending', null), "
            "(3, 2, 'pending', null), (4, 2, 'failed', '2026-01-03T04:05:06Z'), "
            "(5, 1, 'delivered', null)) x(n, e, status, failed_at)")
        # An entry of a month with no partition lands in the default partition.
        conn.execute("insert into app.audit_log (action, outcome, status, created_at) "
                     "values ('test.old', 'ok', 200, '2001-01-15 00:00+00')")
        mark, at = code_mark(conn), applied_at(conn)
        through = partitions_through(conn)
    done = status(url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"migration:     {LATEST} ({APPLIED} applied, last at {at})",
        f"sql code:      {mark}",
        "mail queue:    2 queued, 1 failed (last failed at 2026-01-02T03:04:05+00:00)",
        "webhooks:      2 pending, 1 failed (last failed at 2026-01-03T04:05:06+00:00)",
        "audit, last hour:",
        "         3  group.join",
        "         1  pair_invite.accept",
        f"audit partitions: through {through}, 1 rows in the default partition",
        "notify queue:  0.00% in use",
        "most refused by rate limits, last day:",
        f"         9  {b}",
        f"         7  {a}",
        f"last outage:   {OUTAGE}",
    ]
    answer = json.loads(status(url, "--json").stdout)
    generated = answer.pop("generated_at")
    assert generated.endswith("+00:00")
    # The queue is the cluster's: a few pages of other tests' notifications at most.
    assert 0 <= answer.pop("notify_queue_usage") < 0.0001
    assert answer == {
        "migration": {"latest": LATEST, "applied": APPLIED, "applied_at": at},
        "sql_code": mark,
        "mail": {"queued": 2, "failed": 1, "last_failed_at": "2026-01-02T03:04:05+00:00"},
        "webhooks": {"pending": 2, "failed": 1,
                     "last_failed_at": "2026-01-03T04:05:06+00:00"},
        "audit_last_hour": [{"action": "group.join", "rows": 3},
                            {"action": "pair_invite.accept", "rows": 1}],
        "audit_partitions": {"through": through, "default_rows": 1},
        "most_refused": [{"user_id": b, "refused": 9}, {"user_id": a, "refused": 7}],
        "last_outage": None,
    }


def test_a_listener_that_does_not_read_fills_the_notify_queue(url: str) -> None:
    """A session that LISTENs inside an open transaction reads nothing: the 300
    notifications of about 8 kB sent meanwhile stay queued, about 300 of the
    queue's pages; status shows the fraction pg_notification_queue_usage() gives."""
    with psycopg.connect(url, autocommit=True) as listener, \
            psycopg.connect(url, autocommit=True) as sender:
        listener.execute("listen joinery_status_test")
        listener.execute("begin")
        listener.execute("select 1")
        for _ in range(300):
            sender.execute("select pg_notify('joinery_status_test', repeat('x', 7900))")
        row = sender.execute("select pg_notification_queue_usage()").fetchone()
        assert row is not None
        usage = float(row[0])
        assert 0.0002 < usage < 0.01  # 300 pages of 8 kB in a queue of 8 GB, and any others
        answer = json.loads(status(url, "--json").stdout)
        screen = status(url).stdout.splitlines()
        listener.execute("commit")
    assert answer["notify_queue_usage"] == usage
    assert f"notify queue:  {usage:.2%} in use" in screen


def test_only_the_owner_and_service_role_may_call_it(url: str) -> None:
    with psycopg.connect(url) as conn:
        grantees = {r[0] for r in conn.execute(
            "select grantee::regrole::text from pg_proc p, aclexplode(p.proacl) "
            "where p.oid = 'private.status(integer)'::regprocedure "
            "and privilege_type = 'EXECUTE'").fetchall()}
    assert grantees == {"postgres", "service_role"}


def test_unreachable_database_exits_2() -> None:
    done = status("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("status: cannot read the database: ")
