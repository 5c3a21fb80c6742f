"""The plans of every statement a hot call runs, nested ones included, from
auto_explain (ANALYZE, BUFFERS, JSON) sent to the client as notices. Each call
runs CALLS_PER_FUNCTION times in one session, so PL/pgSQL's plan cache may switch
to generic plans; any sequential scan of a table with more than BIG_TABLE rows is
reported with the statement that ran it."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from .calls import Call
from .layout import Layout, user_id

CALLS_PER_FUNCTION = 8
BIG_TABLE = 10_000


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _first_line(text: str) -> str:
    words = " ".join(text.split())
    return words[:160] + ("..." if len(words) > 160 else "")


def explain(url: str, call: Call, s: Layout, offset: int) -> dict[str, Any]:
    """Plans of CALLS_PER_FUNCTION calls of `call`, as superuser with the role and
    claims of each request; sequential calls use indices from offset. Rolled back."""
    plans: list[dict[str, Any]] = []
    rng = random.Random(f"plans-{call.name}")

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if "plan:" in text:
            with_plan = text.split("plan:", 1)[1]
            with contextlib.suppress(ValueError):
                plans.append(json.loads(with_plan))

    with psycopg.connect(url, autocommit=True) as conn:
        conn.add_notice_handler(on_notice)
        conn.execute("load 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_analyze = on", "log_buffers = on",
                        "log_nested_statements = on", "log_format = json", "log_verbose = on",
                        "log_level = notice", "log_timing = on"):
            conn.execute(f"set auto_explain.{setting}")
        fn = sql.Identifier("api", call.name)
        for n in range(CALLS_PER_FUNCTION):
            user, args = call.request(s, offset + n, rng)
            claims = json.dumps({"role": "authenticated", "sub": user_id(user)})
            with conn.transaction(force_rollback=True):
                conn.execute("select set_config('role', 'authenticated', true), "
                             "set_config('request.jwt.claims', %s, true)", (claims,))
                if call.arg:
                    conn.execute(sql.SQL("select {}({} => %s)").format(
                        fn, sql.Identifier(call.arg)), (args[call.arg],))
                else:
                    conn.execute(sql.SQL("select {}()").format(fn))
        conn.execute("set auto_explain.log_min_duration = -1")
        sizes = dict(conn.execute(
            "select c.oid::regclass::text, c.reltuples::bigint from pg_class c "
            "where c.relnamespace in ('app'::regnamespace, 'auth'::regnamespace) "
            "and c.relkind = 'r'").fetchall())
    return summarize(plans, sizes)


def summarize(plans: list[dict[str, Any]], sizes: dict[str, int]) -> dict[str, Any]:
    statements: dict[str, dict[str, Any]] = {}
    seq_scans: list[dict[str, Any]] = []
    for entry in plans:
        query = _first_line(entry.get("Query Text", ""))
        if query.lower().startswith(("select set_config", 'select "api".')):
            continue
        seen = statements.setdefault(query, {"runs": 0, "nodes": set(), "max_ms": 0.0})
        seen["runs"] += 1
        root = entry.get("Plan", {})
        seen["max_ms"] = max(seen["max_ms"], float(root.get("Actual Total Time", 0.0)))
        for node in _nodes(root):
            relation = node.get("Relation Name")
            kind = node.get("Node Type", "")
            if relation:
                name = f"{node.get('Schema', 'app')}.{relation}"
                seen["nodes"].add(f"{kind} on {name}" + (
                    f" using {node['Index Name']}" if node.get("Index Name") else ""))
                if kind == "Seq Scan":
                    rows = sizes.get(name, sizes.get(relation, 0))
                    seq_scans.append({"table": name, "table_rows": rows,
                                      "big": rows > BIG_TABLE, "statement": query,
                                      "filter": node.get("Filter", "")})
    unique_scans = {(x["table"], x["statement"]): x for x in seq_scans}
    return {
        "statements": [{"statement": q, "runs": v["runs"], "max_ms": round(v["max_ms"], 3),
                        "scans": sorted(v["nodes"])} for q, v in statements.items()],
        "seq_scans": list(unique_scans.values()),
        "big_seq_scans": [x for x in unique_scans.values() if x["big"]],
    }
