"""The webhook worker: delivers app.webhook_deliveries over HTTP.

Each delivery goes through three short steps, and no transaction is open while
the receiver is called:

1. lease: private.webhook_claim takes a due delivery (FOR UPDATE SKIP LOCKED),
   gives it a lease (locked_until, a lease id) and commits;
2. send: one POST with the Standard Webhooks headers (webhook-id is the event's
   id, the same on every retry; webhook-timestamp the attempt's time;
   webhook-signature one `v1,` entry per signing key);
3. mark: private.webhook_done logs the attempt and, if the lease is still this
   worker's, records the outcome and the next retry.

Any number of workers may run at once. A worker that dies after the lease
leaves the delivery due again when the lease ends: delivery is at least once,
and receivers deduplicate on webhook-id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .config import WebhookSettings
from .send import Outcome, post, sign

log = logging.getLogger("joinery.webhooks")
CHANNEL = "joinery_webhooks"


def attempt(delivery: dict[str, Any], cfg: WebhookSettings) -> Outcome:
    """Signs and sends one leased delivery (runs in a thread)."""
    msg_id = str(delivery["event_id"])
    timestamp = int(time.time())
    body: str = delivery["body"]
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign([bytes(k) for k in delivery["keys"]], msg_id, timestamp, body),
    }
    return post(delivery["url"], headers, body, cfg.timeout, cfg.allow_private)


class WebhookWorker:
    def __init__(self, conninfo: str, cfg: WebhookSettings) -> None:
        self.conninfo = conninfo
        self.cfg = cfg
        self.delivered = 0
        self.failed_attempts = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._db = asyncio.Lock()
        self._threads = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="webhook")

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name="webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=3,
            application_name="joinery-webhooks")

    async def run_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await self._connect() as conn, await self._connect() as listen:
                    await listen.execute(f"listen {CHANNEL}")
                    # A connection of its own, in autocommit: each claim and each mark
                    # is one statement, its own transaction, one round trip.
                    await conn.execute("set role service_role")
                    delay = 0.5
                    listener = asyncio.create_task(self._listen(listen))
                    pruner = asyncio.create_task(self._prune(conn))
                    slots = [asyncio.create_task(self._slot(conn))
                             for _ in range(self.cfg.concurrency)]
                    try:
                        # The first to fail (a lost connection) ends them all.
                        done, _ = await asyncio.wait([listener, pruner, *slots],
                                                     return_when=asyncio.FIRST_EXCEPTION)
                        for task in done:
                            task.result()
                    finally:
                        for task in (listener, pruner, *slots):
                            task.cancel()
                        await asyncio.gather(listener, pruner, *slots, return_exceptions=True)
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                log.warning("webhooks: database unavailable (%s); retrying", type(exc).__name__)
            except Exception:  # a bug must not end delivery for good: log it, start again
                log.exception("webhooks: worker failed; restarting")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        async for _ in conn.notifies():
            self._wake.set()

    async def _prune(self, conn: psycopg.AsyncConnection) -> None:
        """Deletes events past WEBHOOK_RETENTION with nothing left to send, hourly."""
        while True:
            async with self._db:
                row = await (await conn.execute(
                    "select private.webhook_prune(make_interval(secs => %s))",
                    (self.cfg.retention,))).fetchone()
            if row and row[0]:
                log.info("webhooks: pruned %s events older than %gs", row[0], self.cfg.retention)
            await asyncio.sleep(3600)

    async def _slot(self, conn: psycopg.AsyncConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            delivery = await self.claim(conn)
            if delivery is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.cfg.poll_seconds)
                continue
            outcome = await loop.run_in_executor(self._threads, attempt, delivery, self.cfg)
            await self.mark(conn, delivery, outcome)

    async def claim(self, conn: psycopg.AsyncConnection) -> dict[str, Any] | None:
        """Leases one due delivery and commits (private.webhook_claim)."""
        async with self._db:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("select * from private.webhook_claim(%s, 1)",
                              (self.cfg.lease_seconds,))
            return await cur.fetchone()

    async def mark(self, conn: psycopg.AsyncConnection, delivery: dict[str, Any],
                   outcome: Outcome) -> str:
        async with self._db:
            row = await (await conn.execute(
                "select private.webhook_done(%s, %s, %s, %s, %s, %s, %s, %s)",
                (delivery["delivery_id"], delivery["lease"], outcome.status_code,
                 outcome.latency_ms, outcome.excerpt, outcome.error, self.cfg.retry_scale,
                 self.cfg.disable_after))).fetchone()
        state = str(row[0]) if row else "stale"
        if outcome.ok:
            self.delivered += 1
        else:
            self.failed_attempts += 1
            log.warning("webhooks: delivery %s attempt %s to endpoint %s: %s (%s)",
                        delivery["delivery_id"], delivery["attempt"], delivery["endpoint_id"],
                        outcome.status_code or outcome.error, state)
        return state


def webhook_worker(conninfo: str) -> WebhookWorker | None:
    """The gateway's own worker when WEBHOOK_WORKER=on, else None."""
    cfg = WebhookSettings.from_env()
    return WebhookWorker(conninfo, cfg) if cfg.worker else None


async def webhook_counts(conn: psycopg.AsyncConnection) -> tuple[int, int]:
    """(deliveries pending to enabled endpoints, deliveries failed), read as
    service_role (the caller's transaction has `set local role service_role`)."""
    row = await (await conn.execute(
        "select private.webhook_pending_count(), private.webhook_failed_count()")).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)
