"""python -m bench --citus: the same calls on a Citus cluster (`make bench-citus`
starts a coordinator and two workers on this machine and runs it there).

DATABASE_URL is the coordinator's database; it is migrated (which distributes the
schema) and loaded in place, since a new database on a coordinator would have
neither the extension nor the workers. One size (the largest asked for, 1M by
default). Besides the figures, it keeps the plans of the statements that decide
whether a call stays on one shard (EXPLAIN: Citus's "Task Count" is the number of
shards a statement reaches), and per hot call the shard groups, commands to
workers and multi-shard statements (bench/citus_calls.py). `--workers-list
1,2,4,8` measures every call with each number of gateway processes in turn. Results go to
bench/results/citus-latest.json (and a timestamped copy), beside the
single-node bench/results/latest.json; docs/scaling.md compares them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from gateway.tools.migrate import migrate

from . import citus_calls, load, report
from .layout import SIZES
from .runner import Options, run_size

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / ".work" / "citus"


def log(message: str) -> None:
    print(message, flush=True)


def cluster(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        version = conn.execute("select extversion from pg_extension "
                               "where extname = 'citus'").fetchone()
        workers = conn.execute("select count(*) from pg_dist_node "
                               "where groupid > 0 and isactive").fetchone()
        shards = conn.execute("select shard_count from citus_tables "
                              "where table_name = 'app.events'::regclass").fetchone()
    return {"citus": version[0] if version else None, "workers": workers[0] if workers else 0,
            "shards_per_table": shards[0] if shards else None,
            "layout": "one machine: coordinator, workers, gateway and load generators "
                      "share its cores"}


# The statements that decide whether a call stays on one shard: (name, what to
# pick a real row with, the statement, run under EXPLAIN with the picked values).
STATEMENTS = [
    ("invite by code (lookup)", "select code_hash, group_id from app.group_invites limit 1",
     "select f.group_id from app.group_invites f where f.code_hash = %(a)s"),
    ("invite by code (lock)", "select code_hash, group_id from app.group_invites limit 1",
     "select * from app.group_invites i where i.group_id = %(b)s and i.code_hash = %(a)s "
     "for update"),
    ("membership insert", "select group_id, user_id from app.group_members limit 1",
     "insert into app.group_members (group_id, user_id) values (%(a)s, %(b)s) "
     "on conflict do nothing"),
    ("like group's event (lookup)", "select id, event_id from app.like_groups limit 1",
     "select g.event_id from app.like_groups g where g.id = %(a)s"),
    ("like group lock", "select id, event_id from app.like_groups limit 1",
     "select * from app.like_groups g where g.event_id = %(b)s and g.id = %(a)s for update"),
    ("tally", "select group_id, event_id from app.like_group_approvals limit 1",
     "select count(*) from app.like_group_approvals v join app.event_authors a "
     "on a.event_id = v.event_id and a.user_id = v.author_id "
     "where v.event_id = %(b)s and v.group_id = %(a)s and v.approved"),
    ("token (lookup)", "select token_hash, event_id from app.pair_invite_tokens limit 1",
     "select t.invite_id, t.event_id from app.pair_invite_tokens t where t.token_hash = %(a)s"),
    ("event lock", "select id, id from app.events where capacity is not null limit 1",
     "select * from app.events e where e.id = %(a)s for update"),
    ("my like groups (by user)", "select user_id, event_id from app.like_group_members limit 1",
     "select m.group_id, m.event_id from app.like_group_members m where m.user_id = %(a)s"),
]


def plans(url: str) -> dict[str, Any]:
    """EXPLAIN (not ANALYZE) of each statement: Citus's plan says how many shards
    (tasks) it reaches; rolled back."""
    out: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        for name, pick, statement in STATEMENTS:
            row = conn.execute(pick).fetchone()
            if row is None:
                continue
            text = "\n".join(r[0] for r in conn.execute(
                "explain (costs off) " + statement, {"a": row[0], "b": row[1]}).fetchall())
            tasks = [line for line in text.splitlines() if "Task Count:" in line]
            out[name] = {"tasks": int(tasks[0].split(":")[1]) if tasks else None,
                         "plan": text}
        conn.rollback()
    return out


def main(args: argparse.Namespace, server_url: str) -> int:
    started = time.monotonic()
    wanted = args.sizes.split(",")
    s = [x for x in SIZES if x.label in wanted][-1]
    from gateway.serve import default_workers

    from .__main__ import load_threads

    sweep = [int(x) for x in args.workers_list.split(",") if x] or [
        args.workers or default_workers()]

    def options(workers: int) -> Options:
        return Options(clients=args.clients, seconds=args.seconds, workers=workers,
                       threads=load_threads(),
                       pool=args.pool or max(1, args.clients // workers),
                       only=tuple(x for x in args.calls.split(",") if x),
                       half_load=not args.no_half_load, baseline=False, plans=False,
                       profile=False)

    opt = options(sweep[0])
    WORK.mkdir(parents=True, exist_ok=True)
    log(f"citus: migrating {server_url}")
    log("  " + migrate(server_url)[:200])
    with psycopg.connect(server_url, autocommit=True) as conn:
        # The runner's progress counts join tables that are not co-located.
        name = conn.execute("select current_database()").fetchone()
        assert name is not None
        conn.execute(sql.SQL("alter database {} set citus.enable_repartition_joins = on")
                     .format(sql.Identifier(name[0])))
    log(f"size {s.label}: {s.rows} rows in each big table (distributed)")
    seconds = load.load(server_url, s, log)
    # Per hot call: shard groups, commands sent to workers, multi-shard statements.
    per_call = citus_calls.measure(server_url)
    log(citus_calls.table(per_call))
    by_workers: dict[str, Any] = {}
    progress: dict[str, Any] = {}
    sized: dict[str, Any] = {}
    for workers in sweep:
        log(f"gateway processes: {workers}")
        sized = run_size(server_url, s, options(workers), WORK / s.label / str(workers), log,
                         progress)
        by_workers[str(workers)] = {
            name: {mode: {k: c[mode].get(k) for k in ("calls_s", "p50_ms", "p99_ms")}
                   for mode in ("direct", "gateway") if mode in c}
            for name, c in sized["calls"].items()}
    sized["by_gateway_workers"] = by_workers
    sized["per_call"] = [dict(zip(("call", "shard_groups", "commands", "multi_shard"), row,
                                  strict=True)) for row in per_call]
    sized["load_seconds"] = round(seconds, 1)
    sized["rows"] = load.table_rows(server_url)
    sized["plans"] = plans(server_url)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": report.machine(server_url),
        "cluster": cluster(server_url),
        "settings": {"clients": opt.clients, "seconds": opt.seconds,
                     "gateway_workers": sweep, "pool_per_worker": opt.pool,
                     "load_threads": opt.threads},
        "sizes": {s.label: sized},
    }
    single = RESULTS / "latest.json"
    if single.exists():
        base = json.loads(single.read_text())["sizes"].get(s.label, {}).get("calls", {})
        result["single_node"] = {
            name: {mode: {k: c[mode].get(k) for k in ("calls_s", "p50_ms", "p99_ms")}
                   for mode in ("direct", "gateway") if mode in c}
            for name, c in base.items()}
    result["elapsed_seconds"] = round(time.monotonic() - started)
    log("")
    log(report.table(result["sizes"], report.comparisons(result["sizes"])))
    log(f"elapsed {result['elapsed_seconds']} s")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        text = json.dumps(result, indent=1)
        (RESULTS / "citus-latest.json").write_text(text)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        (RESULTS / f"citus-{stamp}.json").write_text(text)
        log("written bench/results/citus-latest.json and a timestamped copy")
    return 0
