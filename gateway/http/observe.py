"""Access log and metrics, as pure ASGI middleware and a Prometheus text page.

The log line and the metrics name the route template and the SQL function,
never the raw path or query string: those can hold codes and tokens."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Any

import orjson

from ..client import Network, client_address

log = logging.getLogger("joinery.access")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FUNCTION_KEY = "joinery.function"  # set in the ASGI scope by the handler that calls SQL


# Gauges: (help, how the values of several worker processes combine).
GAUGES = {
    "pool_size": ("connections open in the pool", "livesum"),
    "pool_available": ("idle connections in the pool", "livesum"),
    "pool_max": ("POOL_MAX: the most connections the pool opens", "livesum"),
    "pool_requests_waiting": ("requests waiting for a connection", "livesum"),
    "realtime_topics": ("realtime topics listened to", "livesum"),
    "realtime_sse_streams": ("open SSE streams", "livesum"),
    "realtime_sockets": ("open realtime WebSockets that carry a valid token", "livesum"),
    "realtime_pending_sockets": ("open realtime WebSockets without a token of their own yet",
                                 "livesum"),
    "realtime_max_sockets": ("REALTIME_MAX_SOCKETS: the cap on sockets", "livesum"),
    "database_unreachable": ("1 while the circuit breaker is open", "livemax"),
    "mail_queue_depth": ("mail messages waiting to be sent (from the database)", "mostrecent"),
    "mail_failed": ("mail messages given up on (from the database)", "mostrecent"),
    "webhook_pending": ("webhook deliveries waiting to be sent to enabled endpoints"
                        " (from the database)", "mostrecent"),
    "webhook_failed_total": ("webhook deliveries given up on (from the database)", "mostrecent"),
    "audit_default_rows": ("rows in the audit log's default partition, which has them only "
                           "for a month without a partition (from the database)", "mostrecent"),
    "notify_queue_usage": ("fraction of the database's NOTIFY queue in use (0 to 1,"
                           " pg_notification_queue_usage(); from the database)", "mostrecent"),
    "jwks_fetch_failing": ("1 while the last fetch of JWT_JWKS_URL failed", "livemax"),
    "jwks_keys": ("keys held from JWT_JWKS_URL", "livemax"),
}
COUNTERS = {
    "catalog_reloads": "reloads of the function catalogue",
    "database_outages": "times the circuit breaker opened",
    "jwks_fetches": "fetches of JWT_JWKS_URL",
    "jwks_fetch_failures": "fetches of JWT_JWKS_URL that failed or gave no usable key",
}


class Metrics:
    """Requests, latency, gauges and counters, kept with prometheus-client.

    When PROMETHEUS_MULTIPROC_DIR names a directory (`serve` makes one for its
    workers), each process writes its values there and `render` reads every
    process's: counters summed, histograms merged, gauges combined as GAUGES says
    ('mostrecent': the last value any process read from the database). Without
    it, the values of this process."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        disable_created_metrics()  # no *_created series: the same page in both modes
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("joinery_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("joinery_http_request_duration_seconds",
                                 "time to answer, by route", ["route"], buckets=BUCKETS,
                                 registry=self.registry)
        self.gauges = {name: Gauge(f"joinery_{name}", doc, registry=self.registry,
                                   multiprocess_mode=mode)  # type: ignore[arg-type]
                       for name, (doc, mode) in GAUGES.items()}
        self.counters = {name: Counter(f"joinery_{name}", doc, registry=self.registry)
                         for name, doc in COUNTERS.items()}
        self.counted = dict.fromkeys(COUNTERS, 0)
        self.children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        if (pair := self.children.get(key)) is None:
            pair = (self.requests.labels(method, route, str(status)), self.latency.labels(route))
            self.children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def set(self, name: str, value: float) -> None:
        self.gauges[name].set(value)

    def count_to(self, name: str, total: int) -> None:
        """Raises counter `name` to `total`, a count this process keeps elsewhere."""
        if total > self.counted[name]:
            self.counters[name].inc(total - self.counted[name])
            self.counted[name] = total

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path)
        return generate_latest(registry)


class Observe:
    """One JSON access-log line per request (request id, method, route template,
    function, status, duration) and the request metrics. The request id comes
    from an X-Request-Id header when it is short and plain, else a new one, and
    is returned in X-Request-Id."""

    def __init__(self, app: Any, metrics: Metrics, access_log: bool = True,
                 trusted: tuple[Network, ...] = ()) -> None:
        self.app = app
        self.trusted = trusted  # TRUSTED_PROXIES, for the client's address
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        request_id = _request_id(scope)

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(scope["method"], route, status, seconds)
            if self.access_log:
                access_line(request_id, scope["method"], route, scope.get(FUNCTION_KEY), status,
                            seconds, client_address(scope, self.trusted))


def access_line(request_id: str, method: str, route: str, function: str | None, status: int,
                seconds: float, client: str) -> None:
    ACCESS.add(orjson.dumps({
        "request_id": request_id, "method": method, "route": route, "function": function,
        "status": status, "ms": round(seconds * 1000, 2), "client": client,
    }))


class AccessLog:
    """The access log's lines, written in batches: a record through `logging` per
    request cost more than the rest of a call's Python (a lock, a format and a
    write() each); here the lines of up to FLUSH_SECONDS (or MAX_LINES lines) go out
    as one record, one JSON object per line as before. At most FLUSH_SECONDS of
    lines are lost if the process dies; a clean stop flushes them."""

    FLUSH_SECONDS = 0.05
    MAX_LINES = 256

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None

    def add(self, line: bytes) -> None:
        self.lines.append(line)
        if len(self.lines) >= self.MAX_LINES:
            self.flush()
        elif self.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a tool, a test): write at once
                self.flush()
                return
            self.timer = loop.call_later(self.FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.lines:
            text = b"\n".join(self.lines).decode()
            self.lines.clear()
            log.info(text)


ACCESS = AccessLog()


_PREFIX = os.urandom(6).hex()  # this process's part of generated request ids
_counter = itertools.count(1)


def _request_id(scope: Any) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id" and (given := plain_request_id(value)) is not None:
            return given
    return new_request_id()


def plain_request_id(value: bytes) -> str | None:
    """A client's X-Request-Id when it is short and plain (letters, digits, dashes)."""
    if 0 < len(value) <= 64 and value.isascii() and value.replace(b"-", b"").isalnum():
        return value.decode()
    return None


def new_request_id() -> str:
    return f"{_PREFIX}{next(_counter):020x}"
