"""HTTP runs: a server process (the gateway, or the baseline app) and wrk."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.jwt_auth import mint

from .calls import Call
from .layout import Layout, user_id
from .stats import merged_percentiles

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "wrk.lua"
JWT_SECRET = "joinery-bench-secret-0123456789-abcdefghijklmnop"
READ_REQUESTS = 4_000  # distinct (user, argument) pairs of a read call's request file


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the server process)."""
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(self.process.pid)],
                             capture_output=True, text=True, check=False).stdout
        return [int(line.split()[0]) for line in out.splitlines()
                if "spawn_main" in line]


def start(module: str, env: dict[str, str], log_path: Path, health: str) -> Server:
    """`python -m module serve` (gateway) or `python -m module` with env, healthy at
    `health`."""
    port = free_port()
    environment = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port),
                   "JWT_SECRET": JWT_SECRET, **env}
    args = [sys.executable, "-m", module] + (["serve"] if module == "gateway" else [])
    log_file = log_path.open("wb")
    process = subprocess.Popen(args, cwd=ROOT, env=environment, stdout=log_file,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{module} exited early:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + health, timeout=1) as answer:
                if answer.status == 200:
                    return Server(url, process, log_path)
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{module} did not become healthy:\n{log_path.read_text()[-3000:]}")


class Tokens:
    """HS256 tokens of numbered users, minted once each."""

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def __call__(self, n: int) -> str:
        token = self._cache.get(n)
        if token is None:
            token = mint(JWT_SECRET, user_id(n), expires_in=6 * 3600)
            self._cache[n] = token
        return token


def write_requests(path: Path, call: Call, s: Layout, tokens: Tokens, offset: int,
                   count: int) -> int:
    """The request file of a run: request indices offset .. offset + count - 1 of a
    sequential call, or READ_REQUESTS random ones. Returns the number of lines."""
    rng = random.Random(f"{call.name}-{s.label}")
    indices: Iterable[int] = (range(offset, offset + count) if call.sequential
                              else range(READ_REQUESTS))
    lines = []
    for i in indices:
        user, args = call.request(s, i, rng)
        lines.append(tokens(user) + "\t" + orjson.dumps(args).decode())
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


@dataclass
class WrkResult:
    calls_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int
    used: int   # request lines taken (sequential calls: advances the offset)
    seconds: float = 0.0
    pcts_ms: tuple[float, ...] = ()  # the distribution at stats.PCT_POINTS

    def summary(self) -> dict[str, float | int]:
        return {"calls_s": round(self.calls_s, 1), "p50_ms": round(self.p50_ms, 2),
                "p99_ms": round(self.p99_ms, 2), "requests": self.requests,
                "errors": self.errors}


def wrk(base_url: str, path: str, request_file: Path, connections: int, threads: int,
        seconds: float, first: int = 0, delay_ms: float = 0.0) -> WrkResult:
    """wrk POSTing the lines of request_file, from line `first` on, to base_url + path."""
    env = {**os.environ, "BENCH_DELAY_MS": str(int(delay_ms))}
    duration = f"{max(1, round(seconds))}s"
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", duration, "--latency",
           "--timeout", "10s", "-s", str(LUA), base_url + path, "--", str(request_file), path,
           str(threads), str(first)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    data = json.loads(line[len("BENCH "):])
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        calls_s=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000, requests=data["requests"], errors=errors,
        used=data["most_per_thread"] * threads, seconds=data["duration_us"] / 1e6,
        pcts_ms=tuple(x / 1000 for x in data["pcts_us"]))


def combine(runs: list[WrkResult]) -> WrkResult:
    """Several runs of the same thing (slices interleaved with another server's) as one."""
    requests = sum(r.requests for r in runs)
    seconds = sum(r.seconds for r in runs)
    p50, p90, p99 = merged_percentiles([(r.requests, list(r.pcts_ms)) for r in runs],
                                       (50, 90, 99))
    return WrkResult(calls_s=requests / seconds if seconds else 0.0, p50_ms=p50, p90_ms=p90,
                     p99_ms=p99, requests=requests, errors=sum(r.errors for r in runs),
                     used=sum(r.used for r in runs), seconds=seconds,
                     pcts_ms=runs[-1].pcts_ms if runs else ())

