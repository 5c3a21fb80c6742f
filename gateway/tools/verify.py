"""`python -m gateway verify`: the invariants of sql/functions/95_verify.sql, checked
on a live database in one REPEATABLE READ READ ONLY transaction. Exit 0 when all
hold, 1 when one breaks (each named, with up to ten offending ids), 2 when the
check could not run (no connection, a timeout)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
import psycopg


@dataclass(frozen=True)
class Invariant:
    name: str
    broken: int
    ids: list[str]


def check(database_url: str, timeout_ms: int, mail_max_attempts: int,
          months_ahead: int = 2) -> tuple[list[Invariant], float]:
    """The invariants and the seconds the check took. Only reads: the transaction
    is read-only and takes ACCESS SHARE locks; a lock or statement that waits past
    timeout_ms is cancelled (psycopg.errors.QueryCanceled)."""
    start = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("start transaction isolation level repeatable read, read only")
        # Waits for a lock count too: behind a migration's ACCESS EXCLUSIVE lock the
        # check gives up at the timeout, and nothing queues behind it for longer.
        conn.execute("select set_config('statement_timeout', %s, true)", (str(timeout_ms),))
        rows = conn.execute("select invariant, broken, ids from private.verify(%s, %s)",
                            (mail_max_attempts, months_ahead)).fetchall()
        conn.execute("commit")
    return [Invariant(name, int(broken), list(ids)) for name, broken, ids in rows], \
        time.monotonic() - start


def report(invariants: list[Invariant], seconds: float) -> str:
    """One line per invariant, broken ones with their ids, then a summary line."""
    lines = []
    for inv in invariants:
        if inv.broken:
            more = f" (and {inv.broken - len(inv.ids)} more)" if inv.broken > len(inv.ids) else ""
            lines.append(f"BROKEN {inv.name}: {inv.broken} row(s): {' '.join(inv.ids)}{more}")
        else:
            lines.append(f"ok     {inv.name}")
    broken = sum(1 for inv in invariants if inv.broken)
    lines.append(f"verify: {broken} of {len(invariants)} invariants broken ({seconds:.2f} s)"
                 if broken else
                 f"verify: all {len(invariants)} invariants hold ({seconds:.2f} s)")
    return "\n".join(lines) + "\n"


def report_json(invariants: list[Invariant], seconds: float) -> str:
    return orjson.dumps({
        "ok": not any(inv.broken for inv in invariants),
        "seconds": round(seconds, 3),
        "invariants": [{"name": inv.name, "ok": inv.broken == 0, "broken": inv.broken,
                        "ids": inv.ids} for inv in invariants],
    }, option=orjson.OPT_INDENT_2).decode() + "\n"
