"""Access log and metrics, as pure ASGI middleware and a Prometheus text page.

The log line and the metrics name the route template and the SQL function,
never the raw path or query string: those can hold codes and tokens."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import defaultdict
from typing import Any

import orjson

log = logging.getLogger("joinery.access")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FUNCTION_KEY = "joinery.function"  # set in the ASGI scope by the handler that calls SQL


class Metrics:
    """Counters and a latency histogram per route, kept in this process."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.sums: dict[str, float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        counts = self.buckets[route]
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
        self.sums[route] += seconds

    def render(self, gauges: dict[str, float], counters: dict[str, float] | None = None) -> str:
        lines = []
        for name, value in sorted((counters or {}).items()):
            lines.append(f"# TYPE joinery_{name} counter")
            lines.append(f"joinery_{name} {value:g}")
        lines.append("# TYPE joinery_http_requests_total counter")
        for (method, route, status), n in sorted(self.requests.items()):
            lines.append(f'joinery_http_requests_total{{method="{method}",route="{route}",'
                         f'status="{status}"}} {n}')
        lines.append("# TYPE joinery_http_request_duration_seconds histogram")
        for route, counts in sorted(self.buckets.items()):
            running = 0
            for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                running += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'joinery_http_request_duration_seconds_bucket{{route="{route}",'
                             f'le="{le}"}} {running}')
            lines.append(f'joinery_http_request_duration_seconds_sum{{route="{route}"}} '
                         f"{self.sums[route]:.6f}")
            lines.append(f'joinery_http_request_duration_seconds_count{{route="{route}"}} '
                         f"{running}")
        for name, value in sorted(gauges.items()):
            lines.append(f"# TYPE joinery_{name} gauge")
            lines.append(f"joinery_{name} {value:g}")
        return "\n".join(lines) + "\n"


class Observe:
    """One JSON access-log line per request (request id, method, route template,
    function, status, duration) and the request metrics. The request id comes
    from an X-Request-Id header when it is short and plain, else a new one, and
    is returned in X-Request-Id."""

    def __init__(self, app: Any, metrics: Metrics, access_log: bool = True) -> None:
        self.app = app
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
                            seconds)


def access_line(request_id: str, method: str, route: str, function: str | None, status: int,
                seconds: float) -> None:
    ACCESS.add(orjson.dumps({
        "request_id": request_id, "method": method, "route": route, "function": function,
        "status": status, "ms": round(seconds * 1000, 2),
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
