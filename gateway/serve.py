"""Running the gateway: one uvicorn server, or one per worker process.

With several workers each process binds its own listening socket on the same
port with SO_REUSEPORT, so the kernel spreads connections across them. (With
one shared socket, whichever worker is idle when a client connects takes the
connection, and a keep-alive load ends up unevenly split between workers.)

Metrics: the workers write theirs into one directory (prometheus-client's
multiprocess mode, PROMETHEUS_MULTIPROC_DIR, made here unless given), so /metrics
shows the same totals whichever worker answers. With METRICS_PORT, this process
serves them on METRICS_HOST:METRICS_PORT and the workers do not."""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from types import FrameType

import uvicorn

from .http.protocol import Limits, protocol_class
from .settings import Settings

log = logging.getLogger("joinery.serve")
APP = "gateway.http.app:create_app"


# Descriptors kept free beside the connection cap: the listening socket, the
# database pool and listener, mail, logs and whatever libraries open.
FD_RESERVE = 64


def raise_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (each
    connection is a descriptor; the soft limit is often 1024) and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit above %d", soft)
    return soft


def limits(settings: Settings) -> Limits:
    """The protocol limits, the connection cap lowered to fit the file limit."""
    files = raise_file_limit()
    room = max(1, files - FD_RESERVE - settings.pool_max)
    cap = settings.max_connections
    if cap > room:
        log.warning("MAX_CONNECTIONS %d lowered to %d: the open-file limit is %d",
                    cap, room, files)
        cap = room
    return Limits(header_timeout=settings.header_timeout, body_timeout=settings.body_timeout,
                  max_connections=cap, max_header_bytes=settings.max_header_bytes,
                  max_headers=settings.max_headers)


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _config(host: str, port: int, app: str = APP) -> uvicorn.Config:
    # uvicorn parses no proxy headers: the client's address is read by
    # gateway/http/client.py, through TRUSTED_PROXIES only. No Server header
    # either. The protocol is uvicorn's httptools one with timeouts, a header size
    # limit and a connection cap (gateway/http/protocol.py). WebSocket frames larger than
    # REALTIME_MAX_FRAME_BYTES are refused by uvicorn itself (close 1009) before
    # they are buffered; the app checks again.
    settings = Settings.from_env()
    return uvicorn.Config(app, factory=True, host=host, port=port, access_log=False,
                          log_level="warning", timeout_graceful_shutdown=10,
                          proxy_headers=False, server_header=False,
                          http=protocol_class(limits(settings)),
                          ws_max_size=settings.realtime_max_frame_bytes)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int, app: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    uvicorn.Server(_config(host, port, app)).run(sockets=[_listen(host, port)])


def metrics_dir() -> tuple[str, bool]:
    """The directory the processes write their metrics to, emptied; and whether it
    was made here (then it is removed at the end). Set before any worker starts:
    prometheus-client reads it when first imported."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for old in Path(given).glob("*.db"):  # a previous run's values
            old.unlink()
        return given, False
    path = tempfile.mkdtemp(prefix="joinery-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path, True


def serve_metrics(path: str) -> None:
    """With METRICS_PORT: /metrics of every worker on METRICS_HOST:METRICS_PORT, from
    a thread of this process (prometheus-client's own HTTP server)."""
    settings = Settings.from_env()
    if not settings.metrics_port:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)
    start_http_server(settings.metrics_port, settings.metrics_host, registry)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)


def serve(host: str, port: int, workers: int, app: str = APP) -> int:
    """Serves `app` with `workers` processes (0: one per core)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if workers <= 0:
        workers = default_workers()
    os.environ["WORKERS"] = str(workers)  # each process's start-up line says how many
    path, made = metrics_dir()
    try:
        serve_metrics(path)
        return _serve(host, port, workers, app)
    finally:
        if made:
            shutil.rmtree(path, ignore_errors=True)


def _serve(host: str, port: int, workers: int, app: str) -> int:
    if workers == 1:
        uvicorn.Server(_config(host, port, app)).run()
        return 0
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_worker, args=(host, port, app), name=f"gateway-{i}")
                for i in range(workers)]
    for child in children:
        child.start()

    def forward(signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT to every worker: each finishes its requests in flight."""
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    from prometheus_client import multiprocess

    for child in children:
        child.join()
        if child.pid is not None:  # its live gauges no longer count
            multiprocess.mark_process_dead(child.pid)
    # A worker stopped by the forwarded signal exits with it: that is a clean stop.
    failed = [c.exitcode for c in children if c.exitcode not in (0, -signal.SIGTERM,
                                                                 -signal.SIGINT)]
    return 1 if failed else 0
