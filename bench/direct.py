"""Direct runs: the transaction a gateway request runs, driven by pgbench, in two
modes.

- simple: one simple-query script per call, as the gateway sends it: begin; the
  set_config select of role, claims, method, path, headers, statement timeout and
  time zone; the call wrapped as the gateway wraps it; commit -- one compound
  statement (`\\;`), one packet, one round trip, run with -M simple and no
  prepared statement, as the gateway.
- prepared: the same four statements one by one with -M prepared (each parsed and
  planned once per connection, four round trips): the fastest way another
  service holding its own connections can call these functions.

pgbench connects as `authenticator`."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .calls import Call
from .layout import Layout
from .stats import percentile

# What the gateway passes as request.headers for a wrk request (credentials left out).
HEADERS_JSON = '{"host":"127.0.0.1:8000","content-type":"application/json"}'


MODES = ("simple", "prepared")


def script(call: Call, s: Layout, clients: int, mode: str = "simple") -> str:
    lines: list[str] = []
    if call.sequential:
        lines += [f"\\set i :off + :seq * {clients} + :client_id", "\\set seq :seq + 1"]
    lines += list(call.pgbench_sets)
    claims = ("json_build_object('role', 'authenticated', 'sub', md5('bench-user-' || :u)::uuid, "
              "'iat', 1700000000, 'exp', 4000000000)::text")
    setup = (f"select set_config('role', 'authenticated', true), "
             f"set_config('request.jwt.claims', {claims}, true), "
             f"set_config('request.method', 'POST', true), "
             f"set_config('request.path', '/rest/v1/rpc/{call.name}', true), "
             f"set_config('request.headers', '{HEADERS_JSON}', true), "
             f"set_config('request.client_addr', '127.0.0.1', true), "
             f"set_config('statement_timeout', '8000', true), "
             f"set_config('timezone', 'UTC', true)")
    if call.arg:
        source = (f"select to_json(api.{call.name}({call.arg} => _a.{call.arg}))::text as body "
                  f"from json_to_record(json_build_object('{call.arg}', {call.arg_sql})) "
                  f"as _a({call.arg} {call.arg_type})")
    else:
        source = f"select to_json(api.{call.name}())::text as body"
    query = (f"with _c as materialized ({source}) select _c.body, "
             "current_setting('response.status', true), "
             "current_setting('response.headers', true) from _c")
    if mode == "prepared":
        lines += ["begin;", setup + ";", query + ";", "commit;"]
    else:
        lines += [f"begin \\; {setup} \\; {query} \\; commit;"]
    return "\n".join(lines) + "\n"


@dataclass
class DirectResult:
    calls_s: float
    p50_ms: float
    p99_ms: float
    transactions: int
    failed: int
    aborted_clients: int
    next_offset: int     # first request index not used (sequential calls)
    latencies: list[float] = field(default_factory=list, repr=False)  # ms, ascending

    def summary(self) -> dict[str, float | int]:
        return {"calls_s": round(self.calls_s, 1), "p50_ms": round(self.p50_ms, 2),
                "p99_ms": round(self.p99_ms, 2), "transactions": self.transactions,
                "failed": self.failed, "aborted_clients": self.aborted_clients}


def run(url: str, call: Call, s: Layout, offset: int, clients: int, threads: int,
        seconds: int, workdir: Path, mode: str = "simple") -> DirectResult:
    """pgbench against url (the authenticator's), logging every transaction's latency."""
    workdir = workdir / mode
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{call.name}.sql"
    path.write_text(script(call, s, clients, mode))
    prefix = workdir / f"{call.name}.log"
    for old in workdir.glob(f"{call.name}.log*"):
        old.unlink()
    cmd = ["pgbench", "-n", "-M", mode, "-c", str(clients), "-j", str(threads),
           "-T", str(seconds), "-l", f"--log-prefix={prefix}", "-f", str(path),
           "-D", f"off={offset}", "-D", "seq=0", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, check=False)
    out = proc.stdout + proc.stderr
    (workdir / f"{call.name}.out").write_text(out)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if proc.returncode not in (0, 2) or tps is None:
        raise RuntimeError(f"pgbench failed for {call.name}:\n{out[-2000:]}")
    latencies: list[float] = []
    per_client: dict[str, int] = {}
    failed = 0
    for log in workdir.glob(f"{call.name}.log*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            per_client[fields[0]] = per_client.get(fields[0], 0) + 1
            if fields[2] == "failed":
                failed += 1
            else:
                latencies.append(int(fields[2]) / 1000.0)
    latencies.sort()
    # pgbench's rate leaves out connection time: the run's length is what it implies.
    aborted = len(re.findall(r"client \d+ aborted", out))
    most = max(per_client.values(), default=0)
    return DirectResult(
        calls_s=float(tps.group(1)), p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99), transactions=len(latencies), failed=failed,
        aborted_clients=aborted, next_offset=offset + most * clients, latencies=latencies)


def combine(runs: list[DirectResult]) -> DirectResult:
    """Slices of one mode interleaved with the other's, as one run."""
    transactions = sum(r.transactions for r in runs)
    seconds = sum(r.transactions / r.calls_s for r in runs if r.calls_s)
    latencies = sorted(x for r in runs for x in r.latencies)
    return DirectResult(
        calls_s=transactions / seconds if seconds else 0.0,
        p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
        transactions=transactions, failed=sum(r.failed for r in runs),
        aborted_clients=sum(r.aborted_clients for r in runs),
        next_offset=runs[-1].next_offset, latencies=latencies)
