"""Audit retention: `python -m gateway audit-prune`.

app.audit_log is partitioned by month (UTC). This command, run by an operator
(cron, daily or monthly) as the migrating role, adds the partitions of the
coming months and drops those whose whole month is older than the retention
age (AUDIT_RETENTION_DAYS, or --older-than-days), with the refusal counts of
that age. Without it nothing breaks: rows of months with no partition land in
the default partition, which the next run prunes by row. It also deletes the
rate-limit counters whose window has closed (private.rate_limit_prune), and,
at the same age, outbox messages sent and notifications read
(private.retention_prune).
"""

from __future__ import annotations

import psycopg


def prune(database_url: str, older_than_days: int, months_ahead: int = 3) -> list[str]:
    """One transaction: partitions added, then old ones removed; then the closed
    rate-limit windows in a transaction of their own; one line per change."""
    if older_than_days < 1:
        raise ValueError("keep at least one day of audit entries")
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            created = conn.execute("select private.audit_add_partitions(%s)",
                                   (months_ahead,)).fetchall()
            removed = conn.execute("select private.audit_prune(make_interval(days => %s))",
                                   (older_than_days,)).fetchall()
            retained = conn.execute(
                "select private.retention_prune(make_interval(days => %s))",
                (older_than_days,)).fetchall()
        # Rate-limit counters of closed windows (the limiter never deletes: it
        # starts a new window in its caller's row; anyone's would be every shard).
        # On its own, so that a user coming back waits for this delete at most,
        # not for the partitions' changes too.
        hits = conn.execute("select private.rate_limit_prune()").fetchone()
    pruned = [f"deleted {hits[0]} stale rate-limit counters"] if hits and hits[0] else []
    return ([f"created app.{name}" for (name,) in created] + [line for (line,) in removed]
            + pruned + [line for (line,) in retained])
