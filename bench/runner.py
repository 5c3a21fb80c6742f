"""One size: direct (simple and prepared), floor and gateway runs of every hot call,
the registration burst, the baseline, the race and (when asked) the plans."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from gateway.settings import authenticator_url

from . import baseline, burst, direct, http, plans, profile, race
from .calls import Call, calls
from .layout import Layout


@dataclass(frozen=True)
class Options:
    clients: int = 32
    threads: int = 2          # pgbench -j and wrk -t
    seconds: int = 10
    warmup: int = 2           # seconds of HTTP warm-up per call (prepared statements, pool)
    workers: int = 2          # gateway processes (one per core)
    rounds: int = 2           # interleaved slices per compared mode or server (A B B A)
    pool: int = 1             # connections per gateway process (two per core in all)
    prepared: bool = False    # DB_PREPARED_STATEMENTS of the gateway and the floor
    only: tuple[str, ...] = ()
    half_load: bool = True
    baseline: bool = True
    floor: bool = True        # the minimal app (bench/floor.py) beside the gateway
    burst: bool = True        # the registration-opening burst
    plans: bool = False
    profile: bool = False     # py-spy one gateway worker during each full-load run


@dataclass
class Progress:
    """Where a sequential call's next fresh request index is, and its work done."""

    offset: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


def progress_count(url: str, call: Call) -> int | None:
    if not call.progress_sql:
        return None
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(call.progress_sql).fetchone()
    return int(row[0]) if row else None


def fresh_share(before: int | None, after: int | None, done: int) -> float | None:
    """Share of the run's calls that did fresh work (sequential calls)."""
    if before is None or after is None or not done:
        return None
    return round(min(1.0, (after - before) / done), 3)


def run_size(url: str, s: Layout, opt: Options, work: Path, log: Callable[[str], None],
             progress: dict[str, Progress] | None = None) -> dict[str, Any]:
    """One measurement of size s; `progress` carries the sequential calls' next fresh
    rows from one measurement of the same database to the next."""
    auth_url = authenticator_url(url)
    chosen = [c for c in calls(s) if not opt.only or c.name in opt.only]
    progress = progress if progress is not None else {}
    for c in chosen:
        progress.setdefault(c.name, Progress())
    out: dict[str, Any] = {"calls": {}}
    # Modes and servers compared with each other run in interleaved slices (A B B A
    # A B ..., 2 s each by default): on a shared machine the load of others, and
    # stalls such as autovacuum, then weigh on both alike.
    for call in chosen:
        entry: dict[str, Any] = {}
        slices: dict[str, list[direct.DirectResult]] = {m: [] for m in direct.MODES}
        before = progress_count(url, call)
        for mode in interleaved(list(direct.MODES), opt.rounds):
            d = direct.run(auth_url, call, s, progress[call.name].offset, opt.clients,
                           opt.threads, max(1, opt.seconds // opt.rounds), work / "direct", mode)
            progress[call.name].offset = d.next_offset
            slices[mode].append(d)
        done = sum(r.transactions for runs in slices.values() for r in runs)
        fresh = fresh_share(before, progress_count(url, call), done)
        for mode, runs in slices.items():
            d = direct.combine(runs)
            key = "direct" if mode == "simple" else f"direct_{mode}"
            entry[key] = {**d.summary(), "fresh": fresh}
            log(f"  {key:15} {call.name:20} {d.calls_s:8.0f}/s  p50 {d.p50_ms:6.2f} ms  "
                f"p99 {d.p99_ms:6.2f} ms")
        out["calls"][call.name] = entry

    tokens = http.Tokens()
    pool_env = {"GATEWAY_DATABASE_URL": auth_url, "WORKERS": str(opt.workers),
                "POOL_MIN": str(opt.pool), "POOL_MAX": str(opt.pool),
                "DB_PREPARED_STATEMENTS": "on" if opt.prepared else "off"}
    servers: dict[str, http.Server] = {}
    try:
        if opt.floor:
            servers["floor"] = http.start("bench.floor", pool_env, work / "floor.log",
                                          "/healthz")
        servers["gateway"] = http.start("gateway", {**pool_env, "ACCESS_LOG": "off"},
                                        work / "gateway.log", "/healthz")
        gateway = servers["gateway"]
        for call in chosen:
            out["calls"][call.name].update(
                http_runs(servers, url, call, s, opt, progress[call.name],
                          out["calls"][call.name]["direct"]["calls_s"], tokens, work, log))
        if "floor" in servers:
            servers.pop("floor").stop()
        if opt.burst:
            out["burst"] = {"gateway": burst.run_http(url, gateway.url, tokens)}
            log(burst.line("gateway", out["burst"]["gateway"]))
        if opt.baseline:
            out["baseline"] = run_baseline(url, gateway.url, s, opt, progress, tokens, work,
                                           log)
        servers.pop("gateway").stop()
        if opt.burst:
            out["burst"]["direct"] = burst.run_direct(url, auth_url, opt.workers * opt.pool)
            log(burst.line("direct", out["burst"]["direct"]))
    finally:
        for server in servers.values():
            server.stop()
        for request_file in work.glob("*.requests"):  # tokens of many users, large
            request_file.unlink()
    out["checks"] = checks(url)
    if opt.plans:
        out["plans"] = {c.name: plans.explain(url, c, s, progress[c.name].offset + 1000)
                        for c in chosen}
        for name, found in out["plans"].items():
            big = found["big_seq_scans"]
            log(f"  plans   {name:20} {len(found['statements'])} statements, "
                f"{len(big)} sequential scan(s) of big tables")
    return out


def checks(url: str) -> dict[str, int]:
    """Counts that should be zero: pending like groups approved by the runs (the
    approvals must stay under the threshold)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from app.like_groups g where g.status <> 'pending' "
            "and g.created_at > now() - interval '1 day'").fetchone()
    return {"pending_groups_decided": int(row[0]) if row else -1}


def interleaved(labels: list[str], rounds: int) -> list[str]:
    """A B, B A, A B, ...: each label's slices spread evenly over the whole time."""
    order: list[str] = []
    for r in range(rounds):
        order += labels if r % 2 == 0 else labels[::-1]
    return order


def http_runs(servers: dict[str, http.Server], url: str, call: Call, s: Layout, opt: Options,
              pos: Progress, direct_rate: float, tokens: http.Tokens, work: Path,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Warm-up of each server, the full-load runs (floor and gateway in interleaved
    slices), then (optionally) the gateway at half the rate it reached."""
    path = f"/rest/v1/rpc/{call.name}"
    request_file = work / f"{call.name}.requests"
    file_offset = pos.offset
    budget = int(direct_rate * (2 * len(servers) * opt.warmup + 3 * opt.seconds) * 1.3) + 2000
    http.write_requests(request_file, call, s, tokens, file_offset,
                        min(budget, call.pool) if call.sequential else 0)

    def run(server: http.Server, seconds: float, delay_ms: float = 0.0, clients: int = 0
            ) -> tuple[http.WrkResult, float | None]:
        before = progress_count(url, call)
        first = pos.offset - file_offset if call.sequential else 0
        result = http.wrk(server.url, path, request_file, clients or opt.clients,
                          1 if clients == 1 else opt.threads, seconds, first=first,
                          delay_ms=delay_ms)
        if call.sequential:
            pos.offset += result.used
        return result, fresh_share(before, progress_count(url, call), result.requests)

    for server in servers.values():
        run(server, opt.warmup)
    gateway = servers["gateway"]
    sampler = None
    raw = work / f"profile-{call.name}.raw"
    if opt.profile and profile.available() and gateway.worker_pids():
        sampler = profile.start(gateway.worker_pids()[0], max(1, opt.seconds - 2), raw)
    slices: dict[str, list[http.WrkResult]] = {label: [] for label in servers}
    fresh_of: dict[str, list[float]] = {label: [] for label in servers}
    for label in interleaved(list(servers), opt.rounds):
        result, fresh = run(servers[label], max(1, opt.seconds // opt.rounds))
        slices[label].append(result)
        if fresh is not None:
            fresh_of[label].append(fresh)
    if sampler is not None:
        sampler.wait()
        profile.summarize(raw, work / f"profile-{call.name}.txt")
    out: dict[str, Any] = {}
    for label, runs in slices.items():
        full = http.combine(runs)
        out[label] = {**full.summary(),
                      "fresh": min(fresh_of[label]) if fresh_of[label] else None}
        log(f"  {label:15} {call.name:20} {full.calls_s:8.0f}/s  p50 {full.p50_ms:6.2f} ms  "
            f"p99 {full.p99_ms:6.2f} ms")
    full_rate = out["gateway"]["calls_s"]
    if opt.half_load and full_rate > 0:
        # Each connection waits between a response and its next request so that the
        # connections together send about half the maximum rate: a short run with
        # the whole cycle as the pause measures the latency to leave out of it.
        cycle_ms = opt.clients * 1000.0 / (full_rate / 2)
        probe, _ = run(gateway, opt.warmup, delay_ms=cycle_ms)
        half, fresh = run(gateway, opt.seconds, delay_ms=max(1.0, cycle_ms - probe.p50_ms))
        out["half_load"] = {**half.summary(), "fresh": fresh,
                            "target_calls_s": round(full_rate / 2, 1),
                            "p99_over_p50": round(half.p99_ms / half.p50_ms, 2)
                            if half.p50_ms else None}
        log(f"  {'half load':15} {call.name:20} {half.calls_s:8.0f}/s  p50 {half.p50_ms:6.2f} ms  "
            f"p99 {half.p99_ms:6.2f} ms")
        # One client, one request at a time, nothing else running: the spread that
        # the machine (scheduling, wake-ups) and the stack leave with no queue at all,
        # beside which the half-load tail is read.
        out["one_client"] = {}
        for label, server in servers.items():
            one, _ = run(server, ONE_CLIENT_SECONDS, clients=1)
            out["one_client"][label] = {
                "p50_ms": round(one.p50_ms, 3), "p99_ms": round(one.p99_ms, 3),
                "p99_over_p50": round(one.p99_ms / one.p50_ms, 2) if one.p50_ms else None}
            log(f"  {'one client':15} {call.name:20} {label:8} p50 {one.p50_ms:6.2f} ms  "
                f"p99 {one.p99_ms:6.2f} ms")
    return out


ONE_CLIENT_SECONDS = 3


def run_baseline(url: str, gateway_url: str, s: Layout, opt: Options,
                 progress: dict[str, Progress], tokens: http.Tokens, work: Path,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """The baseline app's joins (fresh users, as ours) and the race against both."""
    baseline.prepare(url)
    server = http.start("bench.baseline", {
        "BASELINE_DATABASE_URL": url, "WORKERS": str(opt.workers), "POOL_MAX": str(opt.pool)},
        work / "baseline.log", "/healthz")
    out: dict[str, Any] = {}
    try:
        join = next(c for c in calls(s) if c.name == "join_group")
        pos = progress.get("join_group") or Progress(offset=0)
        pos.offset += 1000  # past anything the gateway may have had in flight
        request_file = work / "baseline.requests"
        http.write_requests(request_file, join, s, tokens, pos.offset, 50_000)
        warm = http.wrk(server.url, "/join", request_file, opt.clients, opt.threads, opt.warmup)
        result = http.wrk(server.url, "/join", request_file, opt.clients, opt.threads,
                          opt.seconds, first=warm.used)
        pos.offset += warm.used + result.used
        out["join"] = result.summary()
        log(f"  baseline join               {result.calls_s:8.0f}/s  p50 {result.p50_ms:6.2f} ms"
            f"  p99 {result.p99_ms:6.2f} ms")
        out["race"] = race.run(url, gateway_url, server.url, tokens)
        log(f"  race    ours {out['race']['ours_joined']}  "
            f"baseline {out['race']['baseline_joined']} (max_uses 5, 40 users)")
    finally:
        server.stop()
    return out
