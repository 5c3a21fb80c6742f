"""`python -m gateway status`: one screen for an operator. The migration version
(yoyo's table, wherever it lives), the code of sql/ installed, and what
private.status() reads: the mail queue, failed mail, webhook deliveries pending
and failed, the audit of the last hour
by action, the users most refused by rate limits, how far ahead the audit log has
monthly partitions and the rows in its default partition (which should be none),
and how full the NOTIFY queue is (pg_notification_queue_usage()).
Outages are not recorded in the database (the gateway counts them per process:
joinery_database_outages_total on /metrics, and logs them), so the last outage is
reported as not recorded."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from psycopg import sql

OUTAGE = "not recorded in the database (see joinery_database_outages_total and the log)"


def collect(database_url: str, top: int = 5) -> dict[str, Any]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("start transaction isolation level repeatable read, read only")
        conn.execute("set local statement_timeout = '10s'")
        conn.execute("set local timezone = 'UTC'")  # times shown in UTC, whatever the server's
        table = conn.execute(
            "select n.nspname, c.relname from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where c.relname = '_yoyo_migration' and c.relkind = 'r' "
            "order by n.nspname = 'public' limit 1").fetchone()
        migration: dict[str, Any] = {"latest": None, "applied": 0, "applied_at": None}
        if table is not None:
            row = conn.execute(sql.SQL(
                "select migration_id, applied_at_utc, count(*) over () from {} "
                "order by migration_id desc limit 1").format(sql.Identifier(*table))).fetchone()
            if row is not None:
                migration = {"latest": row[0], "applied": row[2],
                             "applied_at": row[1].isoformat(timespec="seconds") + "Z"}
        code = conn.execute(
            "select obj_description('api'::regnamespace, 'pg_namespace')").fetchone()
        row = conn.execute("select private.status(%s)", (top,)).fetchone()
        conn.execute("commit")
    assert row is not None
    return {"migration": migration, "sql_code": code[0] if code else None, **row[0],
            "last_outage": None}


def report(status: dict[str, Any]) -> str:
    m, mail, hooks = status["migration"], status["mail"], status["webhooks"]
    parts = status["audit_partitions"]
    lines = [
        f"migration:     {m['latest'] or 'none applied'} ({m['applied']} applied"
        + (f", last at {m['applied_at']})" if m["applied_at"] else ")"),
        f"sql code:      {status['sql_code'] or 'not installed'}",
        f"mail queue:    {mail['queued']} queued, {mail['failed']} failed"
        + (f" (last failed at {mail['last_failed_at']})" if mail["last_failed_at"] else ""),
        f"webhooks:      {hooks['pending']} pending, {hooks['failed']} failed"
        + (f" (last failed at {hooks['last_failed_at']})" if hooks["last_failed_at"] else ""),
        "audit, last hour:"
        + ("" if status["audit_last_hour"] else " none"),
        *(f"  {a['rows']:>8}  {a['action']}" for a in status["audit_last_hour"]),
        f"audit partitions: through {parts['through'] or 'none'}, "
        f"{parts['default_rows']} rows in the default partition",
        f"notify queue:  {status['notify_queue_usage']:.2%} in use",
        "most refused by rate limits, last day:"
        + ("" if status["most_refused"] else " none"),
        *(f"  {r['refused']:>8}  {r['user_id']}" for r in status["most_refused"]),
        f"last outage:   {OUTAGE}",
    ]
    return "\n".join(lines) + "\n"


def report_json(status: dict[str, Any]) -> str:
    return orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() + "\n"
