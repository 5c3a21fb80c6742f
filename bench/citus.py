"""python -m bench --citus: the same calls on a Citus cluster (`make bench-citus`
starts a coordinator and two workers on this machine and runs it there).

DATABASE_URL is the coordinator's database; it is migrated (which distributes the
schema) and loaded in place, since a new database on a coordinator would have
neither the extension nor the workers. One size (the largest asked for, 1M by
default). Besides the figures, it keeps, for each hot call, how many shards its
statements touched (EXPLAIN of the statements the call runs, from Citus's
`citus.explain_all_tasks` off: one task = one shard). Results go to
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

from gateway.tools.migrate import migrate

from . import load, report
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


def main(args: argparse.Namespace, server_url: str) -> int:
    started = time.monotonic()
    wanted = args.sizes.split(",")
    s = [x for x in SIZES if x.label in wanted][-1]
    opt = Options(clients=args.clients, seconds=args.seconds, workers=args.workers,
                  pool=args.pool or max(1, args.clients // args.workers),
                  only=tuple(x for x in args.calls.split(",") if x),
                  half_load=not args.no_half_load, baseline=False, plans=False,
                  profile=False)
    WORK.mkdir(parents=True, exist_ok=True)
    log(f"citus: migrating {server_url}")
    log("  " + migrate(server_url)[:200])
    log(f"size {s.label}: {s.rows} rows in each big table (distributed)")
    seconds = load.load(server_url, s, log)
    sized = run_size(server_url, s, opt, WORK / s.label, log)
    sized["load_seconds"] = round(seconds, 1)
    sized["rows"] = load.table_rows(server_url)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": report.machine(server_url),
        "cluster": cluster(server_url),
        "settings": {"clients": opt.clients, "seconds": opt.seconds,
                     "gateway_workers": opt.workers, "pool_per_worker": opt.pool},
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
