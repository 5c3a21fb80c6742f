"""python -m bench.cpu: the database's CPU time per hot call, one session at a time.

Throughput on a shared machine moves with whatever else runs on it; the CPU time
the server process spends on a call moves much less. For each hot call this
opens one connection as `authenticator`, sends the transaction the gateway sends
(built by gateway.db: the same script and client-side binding, or with `--modes
prepared` the two prepared statements in one pipeline that
DB_PREPARED_STATEMENTS=on sends), warms the session up, then reads the
backend's user + system CPU time (/proc/PID/stat; the server must run on this
machine) around N calls, in several rounds. Reported: CPU microseconds per call
(median of the rounds, and the range) and wall time per call. Needs DATABASE_URL
(a superuser URL of a cluster it may fill; run it with
`scripts/devdb run .venv/bin/python -m bench.cpu`).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg

from gateway.db import (
    CATALOG_QUERY,
    NEVER_BY_COUNT,
    PREPARED_SETUP,
    SETUP_VALUES,
    _build_query,
    _scripts,
)
from gateway.settings import authenticator_url

from . import load
from .calls import Call, calls
from .direct import HEADERS_JSON
from .layout import SIZES, Layout, user_id

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def scripts(conn: psycopg.Connection) -> dict[str, tuple[str, str, bool]]:
    """name -> (the gateway's transaction script, the call alone for the prepared
    mode, whether it takes the JSON arguments: any function with arguments, even
    all of them defaulted, as the gateway sends it)."""
    out = {}
    for name, _vol, retset, void, names, types, _nd, _c in conn.execute(CATALOG_QUERY):
        query = _build_query(name, tuple(names), tuple(types), retset, void)
        script, _ = _scripts(query)
        out[name] = (script, query.as_string(None), bool(names))
    return out


def values(call: Call, s: Layout, i: int, rng: random.Random,
           takes_args: bool) -> tuple[Any, ...]:
    user, args = call.request(s, i, rng)
    claims = {"role": "authenticated", "sub": user_id(user), "iat": 1700000000,
              "exp": 4000000000}
    out: tuple[Any, ...] = ("authenticated", orjson.dumps(claims).decode(), "POST",
                            f"/rest/v1/rpc/{call.name}", HEADERS_JSON, "127.0.0.1", "8000", "2000")
    return (*out, orjson.dumps(args).decode()) if takes_args else out


def measure(url: str, call: Call, s: Layout, sent: tuple[str, str, bool], start: int,
            warmup: int,
            count: int, rounds: int, mode: str = "simple") -> dict[str, Any]:
    rng = random.Random(7)
    i = start
    cpu: list[float] = []
    wall: list[float] = []
    prepared = mode == "prepared"
    with psycopg.connect(url, autocommit=True,
                         prepare_threshold=NEVER_BY_COUNT if prepared else None) as conn:
        pid = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        cursor = psycopg.ClientCursor(conn)
        setup, the_call = conn.cursor(), conn.cursor()
        script, query, takes_args = sent

        def run(n: int) -> None:
            nonlocal i
            for _ in range(n):
                v = values(call, s, i, rng, takes_args)
                i += 1
                if prepared:  # as gateway.db.prepared_call sends it
                    with conn.pipeline():
                        setup.execute(PREPARED_SETUP, v[:SETUP_VALUES], prepare=True)
                        the_call.execute(query, v[SETUP_VALUES:], prepare=True)  # type: ignore[arg-type]
                    the_call.fetchone()
                    continue
                cursor.execute(script, v)  # type: ignore[arg-type]
                while cursor.nextset():
                    pass

        run(warmup)
        for _ in range(rounds):
            c0, t0 = cpu_seconds(pid), time.perf_counter()
            run(count)
            c1, t1 = cpu_seconds(pid), time.perf_counter()
            cpu.append((c1 - c0) / count * 1e6)
            wall.append((t1 - t0) / count * 1e6)
    return {"cpu_us": round(statistics.median(cpu)), "cpu_us_range": [round(min(cpu)),
            round(max(cpu))], "wall_us": round(statistics.median(wall)), "next": i}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu")
    parser.add_argument("--size", default="10k")
    parser.add_argument("--calls", default="", help="comma-separated hot calls (default: all)")
    parser.add_argument("--count", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--modes", default="simple",
                        help="comma-separated: simple (the default script), prepared "
                             "(DB_PREPARED_STATEMENTS=on)")
    args = parser.parse_args(argv)
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    s = next(x for x in SIZES if x.label == args.size)
    load.tune_server(server_url)
    url = load.create_database(server_url, f"bench_cpu_{s.label.lower()}")
    load.load(url, s, lambda m: print(m, flush=True))
    auth_url = authenticator_url(url)
    with psycopg.connect(url) as conn:
        known = scripts(conn)
    only = [x for x in args.calls.split(",") if x]
    print(f"{'call':20} {'mode':9} {'cpu us/call':>12} {'range':>13} {'wall us/call':>13}")
    offset = 0
    for call in calls(s):
        if only and call.name not in only:
            continue
        for mode in args.modes.split(","):
            result = measure(auth_url, call, s, known[call.name], offset, args.warmup,
                             args.count, args.rounds, mode)
            offset = result["next"] if call.sequential else 0  # fresh rows for each mode
            low, high = result["cpu_us_range"]
            print(f"{call.name:20} {mode:9} {result['cpu_us']:12d} {f'{low}-{high}':>13} "
                  f"{result['wall_us']:13d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
