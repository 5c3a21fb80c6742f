"""Who may hold a realtime subscription, and how many: the per-process and
per-user caps shared by SSE streams and WebSocket channels, and the bounded
authorisation check (api.can_subscribe, one transaction per topic, through the
same call path as HTTP requests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from .. import db
from ..errors import unavailable

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from ..breaker import Breaker
    from ..settings import Settings


class LimitReached(Exception):
    """A cap was hit; `per_user` tells which kind (429 rather than 503)."""

    def __init__(self, message: str, per_user: bool) -> None:
        super().__init__(message)
        self.per_user = per_user


class Caller(Protocol):
    """What a check needs of the composition root (gateway/context.py's Gateway)."""

    breaker: Breaker
    catalog: db.Catalog
    pool: AsyncConnectionPool


class Pending(Protocol):
    """A socket that holds no channel (realtime/socket.py's Session)."""

    joining: bool  # a join is being checked: its token is being proven

    def evict(self) -> None: ...


class Access:
    """Counts held by this process: SSE streams, sockets, and per user the SSE
    streams plus socket channels. Everything runs on one event loop, so plain
    counters suffice.

    A socket counts against REALTIME_MAX_SOCKETS (and, through its channels,
    against its users' caps) only while it holds a channel, that is once a token
    of its own has been verified and authorised. Until then it is pending: at
    most REALTIME_MAX_PENDING_SOCKETS of those, the oldest evicted for a new one
    (unless a join of its is being checked), so that sockets which never join
    cannot keep out the ones that do."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.streams = 0
        self.sockets = 0
        self.pending: dict[Pending, None] = {}  # oldest first
        self.per_user: Counter[str] = Counter()
        self._checks = asyncio.Semaphore(max(1, settings.realtime_auth_concurrency))

    @staticmethod
    def user_key(claims: dict[str, Any]) -> str:
        sub = claims.get("sub")
        return str(sub) if sub else f"role:{claims.get('role')}"

    def take_user(self, key: str) -> None:
        if self.per_user[key] >= self.settings.realtime_per_user:
            raise LimitReached("Too many realtime subscriptions for this user "
                               f"(at most {self.settings.realtime_per_user} per process).", True)
        self.per_user[key] += 1

    def give_user(self, key: str) -> None:
        self.per_user[key] -= 1
        if self.per_user[key] <= 0:
            del self.per_user[key]

    @contextlib.contextmanager
    def stream(self, claims: dict[str, Any]) -> Iterator[None]:
        """One SSE stream held for its whole life (checks included)."""
        if self.streams >= self.settings.sse_max_streams:
            raise LimitReached("Too many event streams on this server; try again later.",
                               False)
        key = self.user_key(claims)
        self.take_user(key)
        self.streams += 1
        try:
            yield
        finally:
            self.streams -= 1
            self.give_user(key)

    def take_pending(self, socket: Pending) -> bool:
        """A pending place for `socket`, evicting the oldest pending socket that
        is not in the middle of a join when all are taken; False when none can go."""
        if len(self.pending) >= self.settings.realtime_max_pending_sockets:
            victim = next((s for s in self.pending if not s.joining), None)
            if victim is None:
                return False
            del self.pending[victim]
            victim.evict()
        self.pending[socket] = None
        return True

    def give_pending(self, socket: Pending) -> None:
        self.pending.pop(socket, None)

    def promote(self, socket: Pending) -> bool:
        """Pending to counted (its first channel); False at REALTIME_MAX_SOCKETS."""
        if self.sockets >= self.settings.realtime_max_sockets:
            return False
        self.pending.pop(socket, None)
        self.sockets += 1
        return True

    def demote(self, socket: Pending) -> None:
        """Counted to pending (its last channel is gone); evicted itself when no
        pending place can be made."""
        self.sockets -= 1
        if not self.take_pending(socket):
            socket.evict()

    def give_socket(self) -> None:
        self.sockets -= 1

    async def can_subscribe(self, gw: Caller, who: db.Identity, topic: str, method: str,
                            path: str, client: str) -> db.Result:
        """api.can_subscribe(topic) under the caller's claims, as an HTTP call makes
        it (503 at once while the database is known to be unreachable). At most
        REALTIME_AUTH_CONCURRENCY such checks run at once in a process, so a burst
        of subscriptions cannot take the whole pool from API calls."""
        if gw.breaker.open:
            raise unavailable()
        fn = await gw.catalog.find(gw.pool, "can_subscribe", {"topic"})
        async with self._checks:
            return await db.call(gw.pool, fn, {"topic": topic}, who, method, path, {},
                                 self.settings.statement_timeout_ms, client_addr=client,
                                 lock_timeout_ms=self.settings.lock_timeout_ms)
