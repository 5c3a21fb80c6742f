"""/metrics across worker processes (prometheus-client's multiprocess mode): the
same totals whichever worker answers, METRICS_PORT, METRICS_DB_INTERVAL."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import httpx
import psycopg

from conftest import free_port, start_gateway, stop_gateway

HEALTHZ = re.compile(
    r'^joinery_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$', re.M)


def healthz_count(text: str) -> int:
    found = HEALTHZ.search(text)
    return int(float(found[1])) if found else 0


def gauge(text: str, name: str) -> float:
    found = re.search(rf"^joinery_{name} (\S+)$", text, re.M)
    assert found, text
    return float(found[1])


def test_two_workers_one_view_under_load(database_url: str, tmp_path: Path) -> None:
    """40 scrapes, each on a new connection (so either worker answers), while four
    clients send 150 requests each: the count never goes down, and at the end it is
    exactly the requests sent (plus the health checks of start_gateway)."""
    gateway = start_gateway(database_url, tmp_path / "gateway.log", WORKERS="2")
    try:
        before = healthz_count(httpx.get(f"{gateway.url}/metrics", timeout=10).text)
        sent = [0] * 4

        def load(i: int) -> None:
            with httpx.Client(base_url=gateway.url, timeout=30) as http:
                for _ in range(150):
                    assert http.get("/healthz").status_code == 200
                    sent[i] += 1

        threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        seen = []
        for _ in range(40):
            seen.append(healthz_count(httpx.get(f"{gateway.url}/metrics", timeout=10).text))
        for thread in threads:
            thread.join()
        final = httpx.get(f"{gateway.url}/metrics", timeout=10).text
        assert seen == sorted(seen), seen
        assert seen[0] >= before
        assert healthz_count(final) == before + sum(sent) == before + 600
        assert gauge(final, "pool_max") == 2 * 20  # POOL_MAX of each worker, summed
    finally:
        stop_gateway(gateway)


def test_metrics_port_serves_them_and_the_public_port_does_not(
        database_url: str, tmp_path: Path) -> None:
    port = free_port()
    gateway = start_gateway(database_url, tmp_path / "gateway.log", WORKERS="2",
                            METRICS_PORT=str(port), METRICS_HOST="127.0.0.1")
    try:
        assert httpx.get(f"{gateway.url}/metrics", timeout=10).status_code == 404
        # start_gateway's own health checks (one, or more while the database was
        # still being reached), read from the metrics port before these 7.
        started = healthz_count(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        assert started >= 1
        with httpx.Client(base_url=gateway.url, timeout=10) as http:
            for _ in range(7):
                assert http.get("/healthz").status_code == 200
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        # Those and these 7, whichever worker answered; the 404 is counted apart.
        assert healthz_count(text) == started + 7
        assert re.search(r'^joinery_http_requests_total\{method="GET",route="unmatched",'
                         r'status="404"\} 1\.0$', text, re.M), text
    finally:
        stop_gateway(gateway)


def test_database_gauges_read_once_per_interval(database_url: str, tmp_path: Path,
                                                admin: psycopg.Connection) -> None:
    gateway = start_gateway(database_url, tmp_path / "gateway.log",
                            METRICS_DB_INTERVAL="3600")
    try:
        first = gauge(httpx.get(f"{gateway.url}/metrics", timeout=10).text, "mail_failed")
        row = admin.execute(
            "insert into app.mail_outbox (to_email, template, attempts, failed_at) "
            "values ('metrics-interval@example.com', 'pair_invite', 8, now()) "
            "returning id").fetchone()
        assert row is not None
        try:
            again = gauge(httpx.get(f"{gateway.url}/metrics", timeout=10).text, "mail_failed")
            fresh = admin.execute(
                "select count(*) from app.mail_outbox where failed_at is not null").fetchone()
        finally:
            admin.execute("delete from app.mail_outbox where id = %s", (row[0],))
        assert again == first  # not read again within the hour
        assert fresh is not None and fresh[0] == first + 1
    finally:
        stop_gateway(gateway)


def test_notify_queue_usage_gauge(database_url: str, tmp_path: Path,
                                  admin: psycopg.Connection) -> None:
    """joinery_notify_queue_usage is pg_notification_queue_usage(): held up by a
    listener in an open transaction, 300 notifications of about 8 kB stay queued,
    and the gauge shows the fraction PostgreSQL gives."""
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("listen joinery_metrics_test")
        listener.execute("begin")
        listener.execute("select 1")
        for _ in range(300):
            admin.execute("select pg_notify('joinery_metrics_test', repeat('x', 7900))")
        row = admin.execute("select pg_notification_queue_usage()").fetchone()
        assert row is not None and row[0] > 0.0002
        gateway = start_gateway(database_url, tmp_path / "gateway.log")
        try:
            value = gauge(httpx.get(f"{gateway.url}/metrics", timeout=10).text,
                          "notify_queue_usage")
        finally:
            stop_gateway(gateway)
            listener.execute("commit")
    assert value == row[0]
