"""python -m bench: the benchmark (see bench/README.md). Needs DATABASE_URL, a
superuser URL of a cluster it may fill (`make bench` makes a throwaway one)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from gateway.serve import default_workers

from . import load, report
from .layout import SIZES
from .runner import Options, Progress, run_size

WORK = Path(__file__).resolve().parent / ".work"


def log(message: str) -> None:
    print(message, flush=True)


def load_threads() -> int:
    """pgbench -j and wrk -t: one per core (at least 2), so that a bigger machine
    is not measured with a load generator sized for this one."""
    return max(2, os.cpu_count() or 2)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--sizes", default=",".join(s.label for s in SIZES),
                        help="comma-separated sizes (10k, 1M)")
    parser.add_argument("--calls", default="", help="comma-separated hot calls (default: all)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0,
                        help="gateway (and floor) processes (default: one per core)")
    parser.add_argument("--workers-list", default="",
                        help="comma-separated gateway process counts to sweep in one run "
                             "(e.g. 1,2,4,8; --citus only; default: just --workers)")
    parser.add_argument("--pool", type=int, default=0,
                        help="connections per gateway process (default: two per core of "
                             "the machine, shared out among the workers)")
    parser.add_argument("--prepared", action="store_true",
                        help="gateway and floor with DB_PREPARED_STATEMENTS=on (two prepared "
                             "statements in one pipeline instead of one simple-query script)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="interleaved slices of each compared run, A B B A ... "
                             "(default: slices of 2 s)")
    parser.add_argument("--no-half-load", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip the minimal app")
    parser.add_argument("--no-burst", action="store_true", help="skip the registration burst")
    parser.add_argument("--no-plans", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy one gateway worker during each full-load run (needs py-spy)")
    parser.add_argument("--check-keys", action="store_true",
                        help="verify the loaded rows' foreign keys (slow at 1M)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each size this many times in a row (data loaded once)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    parser.add_argument("--citus", action="store_true",
                        help="DATABASE_URL is a Citus coordinator: one size, in place "
                             "(bench/citus.py; `make bench-citus`)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        log("DATABASE_URL is not set: run `make bench`")
        return 2
    for tool in ("pgbench", "wrk"):
        if shutil.which(tool) is None:
            log(f"{tool} is missing: run `scripts/install-deps --bench`")
            return 2
    if args.citus:
        from . import citus

        return citus.main(args, server_url)
    started = time.monotonic()
    sizes = [s for s in SIZES if s.label in args.sizes.split(",")]
    workers = args.workers or default_workers()
    # PostgreSQL's rule of thumb for a pool: about two connections per core of the
    # database server (which here is this machine), not one per client.
    opt = Options(clients=args.clients, seconds=args.seconds, workers=workers,
                  threads=load_threads(),
                  pool=args.pool or max(1, 2 * default_workers() // workers),
                  prepared=args.prepared,
                  only=tuple(x for x in args.calls.split(",") if x),
                  half_load=not args.no_half_load, baseline=not args.no_baseline,
                  floor=not args.no_floor, burst=not args.no_burst,
                  rounds=args.rounds or max(1, args.seconds // 2),
                  profile=args.profile)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    load.tune_server(server_url)
    repeat = max(1, args.repeat)
    results: list[dict[str, Any]] = [{
        "date": "",
        "machine": report.machine(server_url),
        "settings": {"clients": opt.clients, "seconds": opt.seconds, "gateway_workers":
                     opt.workers, "pool_per_worker": opt.pool,
                     "prepared_statements": opt.prepared, "pgbench_threads": opt.threads,
                     "wrk_threads": opt.threads, "slices": opt.rounds, "repeat": repeat},
        "sizes": {},
    } for _ in range(repeat)]
    plan_details: dict[str, Any] = {}
    for s in sizes:
        log(f"size {s.label}: {s.rows} rows in each big table")
        url = load.create_database(server_url, f"bench_{s.label.lower()}")
        seconds = load.load(url, s, log)
        if args.check_keys:
            broken = load.check_keys(url)
            log(f"  foreign keys: {broken if broken else 'ok'}")
        progress: dict[str, Progress] = {}
        for n, result in enumerate(results):
            if repeat > 1:
                log(f" run {n + 1} of {repeat} at {s.label}")
            with_plans = not args.no_plans and s is sizes[-1] and n == repeat - 1
            sized = run_size(url, s, Options(**{**opt.__dict__, "plans": with_plans}),
                             WORK / s.label, log, progress)
            sized["load_seconds"] = round(seconds, 1)
            sized["rows"] = load.table_rows(url)
            if "plans" in sized:
                plan_details[s.label] = sized["plans"]
                sized["plans"] = {
                    name: {"statements": len(p["statements"]),
                           "seq_scans_of_big_tables": p["big_seq_scans"],
                           "seq_scans_of_small_tables": sorted(
                               {x["table"] for x in p["seq_scans"] if not x["big"]})}
                    for name, p in sized["plans"].items()}
            result["sizes"][s.label] = sized
            result["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (WORK / "plans.json").write_text(json.dumps(plan_details, indent=1, default=sorted))
    for n, result in enumerate(results):
        comp = report.comparisons(result["sizes"])
        result["comparisons"] = comp
        result["targets"] = report.targets(result["sizes"], comp)
        result["elapsed_seconds"] = round(time.monotonic() - started)
        (WORK / f"result-{n + 1}.json").write_text(json.dumps(result, indent=1))
        log("")
        if repeat > 1:
            log(f"run {n + 1} of {repeat}:")
        log(report.table(result["sizes"], comp))
        log("")
        for line in report.burst_lines(result) + report.one_client_lines(result):
            log(line)
        for name, target in result["targets"].items():
            met = {True: "met", False: "NOT met", None: "-"}[target["met"]]
            log(f"target {name}: worst {target['worst']} ({met})")
        for label, sized in result["sizes"].items():
            if "baseline" in sized:
                b = sized["baseline"]
                ours = sized["calls"].get("join_group", {}).get("gateway", {}).get("calls_s")
                log(f"baseline join {label}: {b['join']['calls_s']:.0f}/s (ours {ours or 0:.0f}/s);"
                    f" race joins ours {b['race']['ours_joined']}, "
                    f"baseline {b['race']['baseline_joined']}")
    log(f"elapsed {round(time.monotonic() - started)} s")
    if not args.no_save:
        for n, result in enumerate(results):
            written = report.write(result, suffix=f"-run{n + 1}" if repeat > 1 else "")
        log(f"written {written.relative_to(written.parents[2])} and timestamped copies")
        report.update_readme(results)
    return 0

if __name__ == "__main__":
    sys.exit(main())
