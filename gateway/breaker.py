"""A circuit breaker around the connection pool.

When the database cannot be reached, waiting for the pool on every request makes
each one take POOL_TIMEOUT to learn what the previous one already knew. After a
connection failure the breaker opens: requests get 503 with Retry-After at once,
without touching the pool, while one background probe per process tries a fresh
connection every `interval` seconds. When a probe connects and runs `select 1`,
the pool's idle connections are checked (those broken by the outage are replaced)
and the breaker closes, so service resumes within `interval` plus one connection
of the database's return.

A pool timeout alone does not open it (the database may just be busy): it starts
a probe, which opens the breaker only if the database does not answer.

On the request path the breaker costs one attribute read (`breaker.open`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg

log = logging.getLogger("joinery.breaker")
PROBE_TIMEOUT = 2.0  # one probe's connect and `select 1`
CHECK_TIMEOUT = 2.0  # the pool's check of its idle connections after a probe succeeded


class Breaker:
    def __init__(self, conninfo: str, interval: float) -> None:
        self.conninfo = conninfo
        self.interval = interval
        self.open = False
        self.pool: Any = None  # a db.Pool, set by its owner
        self.opened = 0  # times it opened (shown in /metrics)
        self._probe: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def failed(self) -> None:
        """A connection failed or the database did not answer: fail fast from now,
        and release the requests already queued for a connection."""
        if not self.open:
            self.open = True
            self.opened += 1
            log.warning("database unreachable: answering 503 until a probe connects")
            if self.pool is not None:
                self._spawn(self.pool.fail_waiting())
        self._start_probe()

    def suspect(self) -> None:
        """The pool had no connection in time: find out whether the database answers."""
        self._start_probe()

    def _start_probe(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = self._spawn(self._run())

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _run(self) -> None:
        while True:
            if await self._answers():
                if self.open:
                    if self.pool is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(self.pool.check(), CHECK_TIMEOUT)
                    self.open = False
                    log.warning("database reachable again")
                return
            if not self.open:
                self.failed()  # marks open; this loop is the probe already running
            await asyncio.sleep(self.interval)

    async def _answers(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=2,
                    application_name="joinery-probe")
                try:
                    await conn.execute("select 1")
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close()
        except (OSError, psycopg.Error, TimeoutError):
            return False
        return True

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task
