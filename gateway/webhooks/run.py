"""python -m gateway webhooks: a webhook worker on its own, until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
        asyncio.run(WebhookWorker(conninfo, cfg).run_forever())
    return 0
