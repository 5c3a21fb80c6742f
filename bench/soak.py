"""python -m bench.soak: the gateway held at half its measured capacity for a long
time (`make soak`; SOAK_SECONDS, default 600). Not part of `make test`.

1. A database of the 10k layout (bench/load.py), and the gateway as an operator
   runs it: `python -m gateway serve`, one worker per core, default settings
   (access log on, into the run's log file).
2. A mix of calls from many users, through wrk: 40 % get_like_group, 40 %
   my_like_groups, 20 % create_group (a new group each time, so tables grow).
3. Capacity: the mix at 32 connections for CAPACITY_SECONDS; then the soak at half
   that rate (each connection pausing between answers, as the half-load runs of
   `make bench`), in back-to-back segments of a minute (shorter runs: a quarter
   of the run each), the first one being the warm-up.
4. Reported: each worker's resident memory after the warm-up and at the end
   (growth must stay under 10 %), p50/p99 and errors per segment (the last
   segment's p99 at most 1.5 times the first measured one's), errors in all
   (none). Results in bench/results/soak-latest.json and a timestamped copy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.serve import default_workers
from gateway.settings import authenticator_url

from . import http, load, report
from .layout import SIZES, Layout, bench_id

WORK = Path(__file__).resolve().parent / ".work" / "soak"
CLIENTS = 32
CAPACITY_SECONDS = 10
MIX_LINES = 20_000
MIX = (("get_like_group", 4), ("my_like_groups", 4), ("create_group", 2))


def log(message: str) -> None:
    print(message, flush=True)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def write_mix(path: Path, s: Layout, tokens: http.Tokens) -> None:
    """MIX_LINES lines of "<path>\\t<token>\\t<body>", the mix in random order."""
    rng = random.Random("soak")
    names = [name for name, weight in MIX for _ in range(weight)]
    lines = []
    for i in range(MIX_LINES):
        name = rng.choice(names)
        if name == "get_like_group":
            h = rng.randrange(s.like_groups)
            user, args = (h * 2 + rng.randrange(2)) % s.users + 1, {"group_id": bench_id("lg", h)}
        elif name == "my_like_groups":
            user, args = rng.randrange(s.users) + 1, {}
        else:
            user, args = rng.randrange(s.users) + 1, {"name": f"Soak group {i}"}
        lines.append(f"/rest/v1/rpc/{name}\t{tokens(user)}\t{orjson.dumps(args).decode()}")
    path.write_text("\n".join(lines) + "\n")


def segments(total: float) -> list[float]:
    """Lengths of the measured segments: minutes, or quarters of a short run."""
    length = 60.0 if total >= 240 else max(5.0, total / 4)
    count = max(2, round(total / length))
    return [length] * count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("SOAK_SECONDS", "600") or 600))
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    server_url = os.environ.get("DATABASE_URL")
    if not server_url or shutil.which("wrk") is None:
        log("needs DATABASE_URL and wrk: run `make soak`")
        return 2
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    s = SIZES[0]
    load.tune_server(server_url)
    url = load.create_database(server_url, "soak")
    load.load(url, s, lambda m: None)
    workers = args.workers or default_workers()
    tokens = http.Tokens()
    mix = WORK / "mix.requests"
    write_mix(mix, s, tokens)
    gateway = http.start("gateway", {"GATEWAY_DATABASE_URL": authenticator_url(url),
                                     "WORKERS": str(workers)}, WORK / "gateway.log", "/healthz")
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": report.machine(server_url), "workers": workers, "clients": CLIENTS,
        "mix": dict(MIX), "seconds": args.seconds}
    try:
        path = "/rest/v1/rpc/my_like_groups"  # each line names its own path
        http.wrk(gateway.url, path, mix, CLIENTS, 2, 2)
        full = http.wrk(gateway.url, path, mix, CLIENTS, 2, CAPACITY_SECONDS)
        capacity = full.calls_s
        log(f"capacity {capacity:.0f}/s (p50 {full.p50_ms:.1f} ms, p99 {full.p99_ms:.1f} ms); "
            f"soak at {capacity / 2:.0f}/s for {args.seconds:.0f} s")
        cycle_ms = CLIENTS * 1000.0 / (capacity / 2)
        delay = max(1.0, cycle_ms - full.p50_ms / 2)
        pids = gateway.worker_pids() or [gateway.process.pid]
        rows = []
        memory_start: dict[int, int] = {}
        for n, length in enumerate(segments(args.seconds)):
            r = http.wrk(gateway.url, path, mix, CLIENTS, 2, length, delay_ms=delay)
            memory = {pid: rss_kib(pid) for pid in pids}
            if n == 0:
                memory_start = memory
            rows.append({"segment": n, "seconds": length, "calls_s": round(r.calls_s, 1),
                         "p50_ms": round(r.p50_ms, 2), "p99_ms": round(r.p99_ms, 2),
                         "errors": r.errors, "rss_kib": list(memory.values()),
                         "warm_up": n == 0})
            log(f"  segment {n}{' (warm-up)' if n == 0 else ''}: {r.calls_s:.0f}/s, "
                f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, {r.errors} errors, "
                f"rss {[m // 1024 for m in memory.values()]} MiB")
    finally:
        gateway.stop()
    measured = rows[1:] or rows
    memory_end = {pid: rss for pid, rss in zip(pids, rows[-1]["rss_kib"], strict=True)}
    growth = max((memory_end[p] - memory_start[p]) / memory_start[p] for p in pids)
    p99_ratio = measured[-1]["p99_ms"] / measured[0]["p99_ms"] if measured[0]["p99_ms"] else None
    errors = sum(r["errors"] for r in rows)
    out.update({
        "capacity_calls_s": round(capacity, 1), "target_calls_s": round(capacity / 2, 1),
        "segments": rows,
        "memory_kib": {"after_warm_up": list(memory_start.values()),
                       "end": list(memory_end.values())},
        "memory_growth": round(growth, 3),
        "p99_last_over_first": round(p99_ratio, 2) if p99_ratio else None,
        "errors": errors,
        "targets": {"memory_growth < 0.10": growth < 0.10,
                    "p99_last_over_first <= 1.5": p99_ratio is not None and p99_ratio <= 1.5,
                    "errors == 0": errors == 0},
        "elapsed_seconds": round(time.monotonic() - started),
    })
    log(f"memory growth after warm-up: {growth:.1%} (per worker "
        f"{[(memory_end[p] - memory_start[p]) // 1024 for p in pids]} MiB); "
        f"p99 last/first {out['p99_last_over_first']}; errors {errors}")
    for name, met in out["targets"].items():
        log(f"target {name}: {'met' if met else 'NOT met'}")
    if not args.no_save:
        report.RESULTS.mkdir(parents=True, exist_ok=True)
        text = report.compact_json(out) + "\n"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        (report.RESULTS / f"soak-{stamp}.json").write_text(text)
        (report.RESULTS / "soak-latest.json").write_text(text)
        log("written bench/results/soak-latest.json and a timestamped copy")
    return 0 if all(out["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
