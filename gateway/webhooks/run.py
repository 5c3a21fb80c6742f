"""python -m gateway webhooks: a webhook worker on its own, until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from .config import WebhookSettings
from .worker import WebhookWorker


def main(conninfo: str) -> int:
    try:
        cfg = WebhookSettings.from_env()
    except ValueError as exc:
        print(f"python -m gateway webhooks: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("joinery.webhooks").info(
        "webhooks: worker started (concurrency %d, timeout %gs, private addresses %s)",
        cfg.concurrency, cfg.timeout, "allowed" if cfg.allow_private else "refused")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(WebhookWorker(conninfo, cfg)))
    return 0


async def _run(worker: WebhookWorker) -> None:
    """Until SIGTERM or SIGINT. A request in flight then is not marked: its
    delivery is sent again when its lease ends (at least once)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await worker.run_forever()
