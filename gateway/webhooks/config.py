"""The webhook worker's settings, read from the environment with the helpers of
gateway.settings (kept in a module of their own so the surface stays in one place)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..settings import DEVELOPMENT, _env, _flag, _float, _int

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(name: str, default: float) -> float:
    """Seconds from `5d`, `12h`, `30m`, `45s` or a plain number of seconds."""
    value = _env(name)
    if value is None:
        return default
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        raise ValueError(f"{name} must be a duration such as 5d, 12h, 30m or 45s, not {value!r}")
    return float(match[1]) * _UNIT[match[2]]


@dataclass(frozen=True)
class WebhookSettings:
    # The gateway process runs a worker too (python -m gateway webhooks always does).
    worker: bool
    # Deliver to loopback, private, link-local and metadata addresses (development
    # and tests only; on by default in JOINERY_ENV=development).
    allow_private: bool
    # An endpoint failing for this long (seconds) is disabled, with an audit row.
    disable_after: float
    # Connect and read timeout of one attempt (seconds).
    timeout: float
    # Requests in flight per worker.
    concurrency: int
    # The retry schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) times this
    # factor: 1 in production, small in tests.
    retry_scale: float
    # How often due retries are looked for when no event wakes the worker.
    poll_seconds: float
    # How long a leased delivery is held (longer than an attempt can take): a
    # worker that dies leaves its deliveries due again after this.
    lease_seconds: int
    # Events older than this, with nothing left to send, are deleted (with their
    # deliveries and log) by the workers, about once an hour.
    retention: float

    @classmethod
    def from_env(cls) -> WebhookSettings:
        development = (_env("JOINERY_ENV", "") or "").lower() == DEVELOPMENT
        timeout = _float("WEBHOOK_TIMEOUT", 15)
        return cls(
            worker=_flag("WEBHOOK_WORKER", False),
            allow_private=_flag("WEBHOOK_ALLOW_PRIVATE", development),
            disable_after=duration("WEBHOOK_DISABLE_AFTER", 5 * 86400),
            timeout=timeout,
            concurrency=max(1, _int("WEBHOOK_CONCURRENCY", 8)),
            retry_scale=_float("WEBHOOK_RETRY_SCALE", 1),
            poll_seconds=_float("WEBHOOK_POLL_SECONDS", 1),
            lease_seconds=max(1, _int("WEBHOOK_LEASE_SECONDS", int(timeout * 2 + 30))),
            retention=duration("WEBHOOK_RETENTION", 30 * 86400),
        )
