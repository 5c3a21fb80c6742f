"""During a database outage every request answers 503 with Retry-After at once, and
service resumes within a second of the database's return (issue 11, item 15).

A throwaway cluster of its own (as tests/test_faults.py makes one), a gateway on it
with the default POOL_TIMEOUT (5 s: a request that waited for the pool would show),
PostgreSQL stopped with `pg_ctl stop -m immediate` and started again.

The figures are printed (pytest -s)."""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_faults import Cluster, migrated_cluster

import pgbouncer
from conftest import (
    JWT_SECRET,
    ROOT,
    GatewayProcess,
    User,
    create_user,
    free_port,
    start_gateway,
    stop_gateway,
)
from gateway.settings import authenticator_url

# The promise (503 within 100 ms of arrival, 200 again within a second of the
# database's return) is a figure, measured and printed here and reported with the
# benchmarks; the assertions check the behaviour with room for a busy 2-core
# machine: answers come from the breaker, far below POOL_TIMEOUT (5 s), and
# service comes back by itself within a few probe intervals.
FAST = 0.25  # median and 95th percentile of the 503s
NONE_SLOWER_THAN = 2.0  # every 503: well under POOL_TIMEOUT, so nobody waited for the pool
RESUME = 3.0  # 200 again after PostgreSQL accepts connections


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    made = migrated_cluster()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def outage_gateway(cluster: Cluster, tmp_path: Path) -> Iterator[GatewayProcess]:
    if not cluster.running():
        cluster.start()
    gateway = start_gateway(cluster.url, tmp_path / "gateway.log", ACCESS_LOG="off",
                            POOL_TIMEOUT="5")
    yield gateway
    stop_gateway(gateway)


def _requests(user: User) -> list[tuple[str, str, dict]]:
    """A mix: POST and GET rpc, a seed route, the health check."""
    return [
        ("POST", "/rest/v1/rpc/create_group", {"json": {"name": "outage"}}),
        ("GET", "/rest/v1/rpc/my_groups", {}),
        ("POST", "/api/groups/join", {"json": {"code": "7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b"}}),
        ("GET", "/healthz", {}),
    ]


def _timed(http: httpx.Client, user: User, method: str, path: str,
           extra: dict) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    answer = http.request(method, path, headers=user.headers, **extra)
    return time.monotonic() - started, answer


def test_outage_answers_503_at_once_and_resumes_by_itself(
        cluster: Cluster, outage_gateway: GatewayProcess) -> None:
    user = create_user(cluster.url)
    with httpx.Client(base_url=outage_gateway.url, timeout=30) as http:
        for _ in range(3):
            assert http.get("/rest/v1/rpc/my_groups", headers=user.headers).status_code == 200

        cluster.stop("immediate")
        # Requests arriving as the database goes: 20 at once, none waits for the pool.
        with concurrent.futures.ThreadPoolExecutor(20) as workers:
            first = list(workers.map(
                lambda _: _timed(http, user, "GET", "/rest/v1/rpc/my_groups", {}), range(20)))
        assert [a.status_code for _, a in first] == [503] * 20, [a.text for _, a in first]
        assert max(s for s, _ in first) < NONE_SLOWER_THAN, sorted(s for s, _ in first)

        # Then, for two seconds, a stream of requests of every kind.
        seconds: list[float] = []
        stop_at = time.monotonic() + 2.0
        while time.monotonic() < stop_at:
            for method, path, extra in _requests(user):
                took, answer = _timed(http, user, method, path, extra)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.headers["retry-after"] == "2", path
                if path != "/healthz":
                    assert answer.json()["code"] == "PGRST001"
                seconds.append(took)
        seconds.sort()
        p50 = statistics.median(seconds)
        p95 = seconds[int(len(seconds) * 0.95)]
        print(f"\noutage: {len(seconds)} requests, 503 in p50 {p50 * 1000:.1f} ms, "
              f"p95 {p95 * 1000:.1f} ms, max {seconds[-1] * 1000:.1f} ms; the 20 at the stop: "
              f"max {max(s for s, _ in first) * 1000:.1f} ms")
        assert p50 < FAST and p95 < FAST, seconds
        assert seconds[-1] < NONE_SLOWER_THAN, seconds

        metrics = http.get("/metrics").text
        assert "joinery_database_unreachable 1" in metrics

        cluster.start()  # returns once PostgreSQL accepts connections
        back = time.monotonic()
        resumed: float | None = None
        while time.monotonic() - back < RESUME + 4:
            answer = http.get("/rest/v1/rpc/my_groups", headers=user.headers)
            if answer.status_code == 200:
                resumed = time.monotonic() - back
                break
            assert answer.status_code == 503, answer.text
            time.sleep(0.02)
        print(f"200 again {resumed if resumed is None else round(resumed, 3)} s after "
              "pg_ctl start returned")
        assert resumed is not None and resumed <= RESUME, resumed
        # Everything works again, writes included.
        created = http.post("/rest/v1/rpc/create_group", json={"name": "after"},
                            headers=user.headers)
        assert created.status_code == 200, created.text
        assert http.get("/healthz").status_code == 200
        assert "joinery_database_unreachable 0" in http.get("/metrics").text


def test_gateway_started_while_the_database_is_down_serves_once_it_is_up(
        cluster: Cluster, tmp_path: Path) -> None:
    if not cluster.running():
        cluster.start()
    user = create_user(cluster.url)
    cluster.stop("fast")
    port = free_port()
    env = {**os.environ, "GATEWAY_DATABASE_URL": authenticator_url(cluster.url),
           "JWT_SECRET": JWT_SECRET, "HOST": "127.0.0.1", "PORT": str(port), "ACCESS_LOG": "off"}
    log = (tmp_path / "gateway.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{url}/healthz", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the gateway did not listen"
                time.sleep(0.1)
        assert health.status_code == 503
        started = time.monotonic()
        answer = httpx.get(f"{url}/rest/v1/rpc/my_groups", headers=user.headers, timeout=30)
        assert answer.status_code == 503
        assert time.monotonic() - started < NONE_SLOWER_THAN
        cluster.start()
        back = time.monotonic()
        while time.monotonic() - back < RESUME + 4:
            answer = httpx.get(f"{url}/rest/v1/rpc/my_groups", headers=user.headers, timeout=30)
            if answer.status_code == 200:
                break
            time.sleep(0.02)
        resumed = time.monotonic() - back
        print(f"\nstarted during the outage: 200 {resumed:.3f} s after pg_ctl start returned")
        assert answer.status_code == 200, answer.text
        assert resumed <= RESUME
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_outage_behind_pgbouncer_fails_fast_once_detected(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    """Behind PgBouncer a connection still opens while PostgreSQL is down; the first
    request learns of the outage from PgBouncer's error, or at the latest at its
    deadline (POOL_TIMEOUT + statement timeout + 0.5 s) when PgBouncer holds it;
    every request after it gets 503 at once, and service resumes within a second
    of PgBouncer reaching PostgreSQL again."""
    if not cluster.running():
        cluster.start()
    user = create_user(cluster.url)
    with pgbouncer.running_pgbouncer(cluster.url,
                                     settings={"server_login_retry": "1"}) as bouncer:
        gateway = start_gateway(cluster.url, tmp_path / "gateway.log", ACCESS_LOG="off",
                                GATEWAY_DATABASE_URL=bouncer.authenticator_url,
                                POOL_TIMEOUT="1", STATEMENT_TIMEOUT_MS="500")
        try:
            with httpx.Client(base_url=gateway.url, timeout=30) as http:
                assert http.get("/rest/v1/rpc/my_groups",
                                headers=user.headers).status_code == 200
                cluster.stop("immediate")
                first_took, first = _timed(http, user, "GET", "/rest/v1/rpc/my_groups", {})
                assert first.status_code == 503
                assert first_took < 1 + 0.5 + 0.5 + NONE_SLOWER_THAN
                seconds = []
                for _ in range(40):
                    took, answer = _timed(http, user, "GET", "/rest/v1/rpc/my_groups", {})
                    assert answer.status_code == 503, answer.text
                    assert answer.headers["retry-after"] == "2"
                    seconds.append(took)
                seconds.sort()
                print(f"\nbehind PgBouncer: first 503 after {first_took:.3f} s, then p50 "
                      f"{statistics.median(seconds) * 1000:.1f} ms, max "
                      f"{seconds[-1] * 1000:.1f} ms")
                assert statistics.median(seconds) < FAST
                assert seconds[-1] < NONE_SLOWER_THAN
                cluster.start()
                back = time.monotonic()
                while time.monotonic() - back < RESUME + 4:
                    answer = http.get("/rest/v1/rpc/my_groups", headers=user.headers)
                    if answer.status_code == 200:
                        break
                    time.sleep(0.02)
                resumed = time.monotonic() - back
                print(f"200 again {resumed:.3f} s after pg_ctl start returned")
                assert answer.status_code == 200, answer.text
                # PgBouncer retries its server login once a second (server_login_retry).
                assert resumed <= RESUME + 1
        finally:
            stop_gateway(gateway)
