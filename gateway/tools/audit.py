"""Retention: `python -m gateway prune` (`audit-prune`, its older name, still works).

app.audit_log is partitioned by month (UTC). This command, run by an operator
(cron or a systemd timer, daily) as the migrating role:

1. adds the partitions of the coming months (three ahead; `migrate` does too),
   so no entry lands in the default partition;
2. detaches each partition whose whole month is older than the retention age
   (AUDIT_RETENTION_DAYS, or --older-than-days), then drops it. DETACH ...
   CONCURRENTLY (SHARE UPDATE EXCLUSIVE on the log: inserts go on) runs outside
   a transaction block; PostgreSQL refuses it while the table has a default
   partition, which this schema keeps (an entry must never fail for want of a
   partition), so then the plain DETACH is used: a short ACCESS EXCLUSIVE on
   the log, bounded by lock_timeout (PRUNE_LOCK_TIMEOUT below) and retried, so
   it never queues the traffic behind a long transaction. A detach that was
   interrupted is finished (DETACH ... FINALIZE) by the next run. The drop
   then touches only the detached table;
3. in one transaction: older rows of the default partition and refusal counts
   (private.audit_prune), and, at the same age, outbox messages sent,
   notifications read, pair-invite tokens of closed invites and stop tokens
   (private.retention_prune);
4. in a transaction of its own, the rate-limit counters whose window has
   closed (private.rate_limit_prune).

Without it nothing breaks at once: rows of months with no partition land in the
default partition (the gauge joinery_audit_default_rows and its alert say so),
which the next run prunes by row.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

LOCK_TIMEOUT = "2s"  # each lock wait of a detach or drop
LOCK_TRIES = 5


def _detach_and_drop(conn: psycopg.Connection, name: str, pending: bool,
                     concurrently: bool) -> str:
    """Detaches app.<name> from the audit log (autocommit: CONCURRENTLY may not run
    in a transaction block), then drops it. Returns the line to report."""
    table = sql.Identifier("app", name)
    if pending:
        how = sql.SQL("finalize")
    else:
        how = sql.SQL("concurrently") if concurrently else sql.SQL("")
    for attempt in range(1, LOCK_TRIES + 1):
        try:
            conn.execute(sql.SQL("alter table app.audit_log detach partition {} {}").format(
                table, how))
            break
        except psycopg.errors.LockNotAvailable:
            if attempt == LOCK_TRIES:
                raise RuntimeError(
                    f"could not detach app.{name}: app.audit_log was locked past "
                    f"{LOCK_TIMEOUT}, {LOCK_TRIES} times (a long transaction? see "
                    "pg_stat_activity); nothing of it changed, run prune again") from None
            time.sleep(0.5 * attempt)
    conn.execute(sql.SQL("drop table {}").format(table))
    way = "finalized" if pending else ("concurrently" if concurrently else "with lock_timeout")
    return f"dropped app.{name} (detached {way})"


def prune(database_url: str, older_than_days: int, months_ahead: int = 3) -> list[str]:
    """Partitions added, old ones detached and dropped, then the rest in one
    transaction, then the closed rate-limit windows in a transaction of their
    own; one line per change."""
    if older_than_days < 1:
        raise ValueError("keep at least one day of audit entries")
    age = f"{older_than_days} days"
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            created = conn.execute("select private.audit_add_partitions(%s)",
                                   (months_ahead,)).fetchall()
            expired = conn.execute(
                "select name, detach_pending from private.audit_expired_partitions(%s::interval)",
                (age,)).fetchall()
            # Citus does not detach a distributed table's partition concurrently.
            row = conn.execute(
                "select not exists (select from pg_catalog.pg_partitioned_table "
                "                  where partrelid = 'app.audit_log'::regclass and partdefid <> 0)"
                " and not exists (select from pg_catalog.pg_extension where extname = 'citus')"
            ).fetchone()
        concurrently = bool(row and row[0])
        conn.execute(sql.SQL("set lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        dropped = [_detach_and_drop(conn, name, pending, concurrently)
                   for name, pending in expired]
        conn.execute("reset lock_timeout")
        with conn.transaction():
            removed = conn.execute("select private.audit_prune(%s::interval)", (age,)).fetchall()
            retained = conn.execute("select private.retention_prune(%s::interval)",
                                    (age,)).fetchall()
        # Rate-limit counters of closed windows (the limiter never deletes: it
        # starts a new window in its caller's row; anyone's would be every shard).
        # On its own, so that a user coming back waits for this delete at most,
        # not for the partitions' changes too.
        hits = conn.execute("select private.rate_limit_prune()").fetchone()
    pruned = [f"deleted {hits[0]} stale rate-limit counters"] if hits and hits[0] else []
    return ([f"created app.{name}" for (name,) in created] + dropped
            + [line for (line,) in removed] + pruned + [line for (line,) in retained])
