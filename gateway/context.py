"""The composition root: what a request needs -- settings, the token verifier, the
pool and the catalogue, the realtime hub and its limits, the mailer -- made once per
process. The surfaces (http/, realtime/, pages/) receive it; they do not import
each other."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import psycopg
from starlette.requests import Request

from . import db
from .breaker import Breaker
from .client import client_address
from .errors import ApiError, invalid_token, unavailable
from .http.observe import Metrics
from .jwks import RemoteKeys
from .jwt_auth import CachedVerifier, InvalidToken, UnknownKeyId, Verifier
from .mail.worker import Mailer
from .realtime.access import Access
from .realtime.hub import Hub
from .settings import Settings
from .startup import jwt_config, start_problem
from .webhooks.worker import webhook_counts, webhook_worker

# Methods that must not change anything: volatile functions refuse them (405), and
# the others run read-only. HEAD is GET without the body (Starlette routes it to
# the GET handler; uvicorn drops the body).
_SAFE_METHODS = frozenset({"GET", "HEAD"})


class Gateway:
    """What a request needs: settings, the token verifier, the pool and the catalogue."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        problem = start_problem(settings)
        if problem is not None:  # serve says so before it starts; any other way in too
            raise RuntimeError(problem)
        self.remote_keys = RemoteKeys(settings.jwt_jwks_url, settings.jwks_min_refresh,
                                      settings.jwks_max_age) if settings.jwt_jwks_url else None
        self.verifier = CachedVerifier(Verifier(jwt_config(settings), self.remote_keys))
        self.breaker = Breaker(settings.database_url, settings.db_probe_interval)
        self.pool = db.make_pool(
            settings.database_url, settings.pool_min, settings.pool_max,
            settings.pool_timeout, self.breaker, settings.prepared_statements)
        self.catalog = db.Catalog()
        self.metrics = Metrics()
        self.metrics_db_at = float("-inf")  # when the database-derived gauges were read
        self.hub = Hub(settings.listen_database_url, self.catalog.invalidate)
        self.access = Access(settings)
        self.mailer = make_mailer(settings) if settings.smtp_url else None
        self.webhooks = webhook_worker(settings.listen_database_url)  # WEBHOOK_WORKER=on

    async def identity(self, request: Request, query_token: bool = False) -> db.Identity:
        """Bearer token, else an apikey header holding a JWT, else (where allowed) an
        access_token query parameter, else anon."""
        headers = request.headers
        return await self.identify(
            headers.get("authorization"), headers.get("apikey"),
            (request.query_params.get("access_token") or None) if query_token else None)

    async def identify(self, authorization: str | None, apikey: str | None,
                       query_token: str | None = None) -> db.Identity:
        """identity() from the header values themselves (the fast path has them)."""
        token = None
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise invalid_token("Authorization header must be 'Bearer <token>'")
            token = value.strip()
        elif apikey is not None and apikey.count(".") == 2:
            token = apikey
        else:
            token = query_token
        if token is None:
            return db.Identity("anon", {"role": "anon"})
        try:
            try:
                claims = self.verifier.verify(token)
            except UnknownKeyId:
                # Keys published at a URL may have rotated: fetch them again (at most
                # once per JWKS_MIN_REFRESH; requests meanwhile share that fetch).
                if self.remote_keys is None \
                        or not await self.remote_keys.refresh_for_unknown_kid():
                    raise
                claims = self.verifier.verify(token)
        except InvalidToken as exc:
            raise invalid_token(str(exc)) from None
        return db.Identity(claims["role"], claims)

    def client(self, scope: dict[str, Any]) -> str:
        """The client's address, through TRUSTED_PROXIES only (gateway/client.py)."""
        return client_address(scope, self.settings.trusted_proxies)

    async def run(self, name: str, args: dict[str, Any], who: db.Identity, method: str,
                  path: str, headers: dict[str, str], bounded: bool = True,
                  client_addr: str = "") -> db.Result:
        """One call of api.name: the function chosen by its argument names, refused
        for GET/HEAD when volatile, run in one transaction -- bounded in time by
        db.call, or (bounded=False) by the caller, as the fast path does."""
        if self.breaker.open:  # the database is unreachable: say so at once
            raise unavailable()
        fn = await self.catalog.find(self.pool, name, set(args))
        if fn.volatile and method in _SAFE_METHODS:
            raise ApiError(405, "PGRST101",
                           f"Cannot use the {method} method on RPC with volatile functions")
        run = db.call if bounded else db.transaction
        return await run(self.pool, fn, args, who, method, path, headers,
                         self.settings.statement_timeout_ms, client_addr,
                         lock_timeout_ms=self.settings.lock_timeout_ms)


    def process_metrics(self) -> None:
        """This process's gauges and counts, written where /metrics reads them."""
        stats, m = self.pool.get_stats(), self.metrics
        m.set("pool_size", stats.get("pool_size", 0))
        m.set("pool_available", stats.get("pool_available", 0))
        m.set("pool_max", stats.get("pool_max", 0))
        m.set("pool_requests_waiting", stats.get("requests_waiting", 0))
        m.set("realtime_topics", len(self.hub.topics))
        m.set("realtime_sse_streams", self.access.streams)
        m.set("realtime_sockets", self.access.sockets)
        m.set("realtime_pending_sockets", len(self.access.pending))
        m.set("realtime_max_sockets", self.settings.realtime_max_sockets)
        m.set("database_unreachable", int(self.breaker.open))
        m.count_to("catalog_reloads", self.catalog.reloads)
        m.count_to("database_outages", self.breaker.opened)
        if self.remote_keys is not None:  # JWT_JWKS_URL: fetches, failures, the keys held
            keys = self.remote_keys
            m.count_to("jwks_fetches", keys.fetches)
            m.count_to("jwks_fetch_failures", keys.failures)
            m.set("jwks_fetch_failing", int(keys.failing))
            m.set("jwks_keys", len(keys.current.keys))

    async def refresh_metrics(self) -> None:
        """process_metrics, and the gauges read from the database (mail queue, failed
        mail, webhook deliveries pending and failed, rows in the audit log's default
        partition, the fraction of the NOTIFY queue in use) when they are older than
        METRICS_DB_INTERVAL and the database answers."""
        self.process_metrics()
        now = time.monotonic()
        if self.breaker.open or now - self.metrics_db_at < self.settings.metrics_db_interval:
            return
        self.metrics_db_at = now
        with contextlib.suppress(Exception):
            async with self.pool.connection(timeout=1) as conn, conn.transaction():
                await conn.execute("set local role service_role")
                # Each read in a savepoint of its own: one that fails (a function
                # missing mid-upgrade, say) leaves the others' gauges current.
                for read in (self._read_queue_gauges, self._read_webhook_gauges):
                    with contextlib.suppress(psycopg.Error):
                        async with conn.transaction():
                            await read(conn)

    async def _read_queue_gauges(self, conn: psycopg.AsyncConnection[Any]) -> None:
        row = await (await conn.execute(
            "select private.mail_queue_depth(), private.mail_failed_count(), "
            "private.audit_default_rows(), "
            "pg_catalog.pg_notification_queue_usage()")).fetchone()
        if row is not None:
            self.metrics.set("mail_queue_depth", row[0])
            self.metrics.set("mail_failed", row[1])
            self.metrics.set("audit_default_rows", row[2])
            self.metrics.set("notify_queue_usage", row[3])

    async def _read_webhook_gauges(self, conn: psycopg.AsyncConnection[Any]) -> None:
        pending, failed = await webhook_counts(conn)
        self.metrics.set("webhook_pending", pending)
        self.metrics.set("webhook_failed_total", failed)

    async def refresh_metrics_forever(self) -> None:
        """Every second: a worker that no scrape reaches keeps its values current."""
        while True:
            with contextlib.suppress(Exception):
                await self.refresh_metrics()
            await asyncio.sleep(1)


def make_mailer(settings: Settings) -> Mailer:
    assert settings.smtp_url
    return Mailer(settings.listen_database_url, settings.smtp_url, settings.mail_from,
                  settings.app_url, settings.mail_poll_seconds, settings.mail_retry_max,
                  settings.mail_max_attempts, settings.invite_reminder_before)
