"""The Starlette application: authenticate, call one `api` function, shape the answer."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import psycopg
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from .. import db
from ..breaker import Breaker
from ..jwks import RemoteKeys
from ..jwt_auth import CachedVerifier, InvalidToken, UnknownKeyId, Verifier
from ..mail.worker import Mailer
from ..pages import routes as page_routes
from ..realtime.access import Access
from ..realtime.hub import Hub
from ..realtime.socket import websocket
from ..realtime.sse import realtime
from ..settings import Settings
from ..startup import jwt_config, start_problem, summary
from ..webhooks.worker import webhook_counts, webhook_worker
from . import openapi
from .arguments import body_missing, check_length, check_profile_value, parse_body
from .client import client_address
from .errors import ApiError, invalid_token, json_response, unavailable
from .fast import FastPath
from .observe import ACCESS, FUNCTION_KEY, Metrics, Observe
from .routes import SEED_ROUTES, SeedRoute

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

    async def invoke(self, request: Request, name: str, args: dict[str, Any],
                     who: db.Identity) -> db.Result:
        request.scope[FUNCTION_KEY] = name
        # Straight from the ASGI scope: header names arrive lower-cased, and the path
        # needs no URL object built around it. Only the allow-listed headers, each
        # value cut to a bounded length (see settings.DEFAULT_SQL_HEADERS).
        allowed, cut = self.settings.sql_headers, self.settings.sql_header_value_max
        headers = {k.decode("latin-1"): v[:cut].decode("latin-1")
                   for k, v in request.scope["headers"] if k in allowed}
        return await self.run(name, args, who, request.method, request.scope["path"], headers,
                              client_addr=self.client(request.scope))

    def client(self, scope: dict[str, Any]) -> str:
        """The client's address, through TRUSTED_PROXIES only (gateway/http/client.py)."""
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
                         self.settings.statement_timeout_ms, client_addr)


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
        mail, webhook deliveries pending and failed) when they are older than
        METRICS_DB_INTERVAL and the database answers."""
        self.process_metrics()
        now = time.monotonic()
        if self.breaker.open or now - self.metrics_db_at < self.settings.metrics_db_interval:
            return
        self.metrics_db_at = now
        with contextlib.suppress(Exception):
            async with self.pool.connection(timeout=1) as conn, conn.transaction():
                await conn.execute("set local role service_role")
                row = await (await conn.execute(
                    "select private.mail_queue_depth(), private.mail_failed_count()")).fetchone()
                if row is not None:
                    self.metrics.set("mail_queue_depth", row[0])
                    self.metrics.set("mail_failed", row[1])
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


async def json_object(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object body ({} when empty). 413, 415 and 400 as PostgREST."""
    check_length(request.headers.get("content-length"), limit)
    raw = b""
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise ApiError(413, "PGRST413", "Request body is too large.")
    except ClientDisconnect:  # gone (or cut off by the body timeout): nobody to answer
        raise body_missing() from None
    return parse_body(raw, request.headers.get("content-type"))


def check_profile(request: Request) -> None:
    for header in ("accept-profile", "content-profile"):
        check_profile_value(request.headers.get(header))


def raw_response(result: db.Result) -> Response:
    if result.body is None:
        return Response(status_code=result.status if result.status != 200 else 204,
                        headers=result.headers)
    return Response(result.body, result.status, result.headers, media_type="application/json")


async def rpc(request: Request) -> Response:
    """POST|GET /rest/v1/rpc/{fn}, as PostgREST answers it."""
    gw: Gateway = request.app.state.gateway
    check_profile(request)
    who = await gw.identity(request)
    if request.method == "POST":
        args = await json_object(request, gw.settings.max_body_bytes)
    else:
        args = dict(request.query_params)
    result = await gw.invoke(request, request.path_params["fn"], args, who)
    return raw_response(result)


def seed_endpoint(route: SeedRoute) -> Callable[[Request], Awaitable[Response]]:
    """The handler of one seed route: arguments from the path and body, shaped answer."""

    async def endpoint(request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        who = await gw.identity(request)
        body = await json_object(request, gw.settings.max_body_bytes) if route.takes_body else {}
        args = route.arguments(request.path_params, body)
        result = await gw.invoke(request, route.function, args, who)
        if result.status >= 400 or result.body is None:
            return raw_response(result)
        shaped = route.shape(orjson.loads(result.body))
        status = route.status if result.status == 200 else result.status
        return json_response(shaped, status, result.headers)

    endpoint.__name__ = f"seed_{route.function}"
    return endpoint


async def openapi_json(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    if not gw.catalog.functions or gw.catalog.stale:  # never loaded, or the schema changed
        if gw.breaker.open:
            raise unavailable()
        try:
            await gw.catalog.load(gw.pool)
        except Exception:  # the database is down: no catalogue to describe
            raise unavailable() from None
    return json_response(openapi.document(gw.catalog))


async def metrics(request: Request) -> Response:
    """Prometheus text: requests, latency, pool use, realtime, the breaker and the
    mail queue, summed across the worker processes of `serve` (observe.Metrics)."""
    gw: Gateway = request.app.state.gateway
    await gw.refresh_metrics()
    return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")


async def healthz(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    if gw.breaker.open:
        return _unhealthy()
    try:
        async with gw.pool.connection(timeout=2) as conn:
            await conn.execute("select 1")
    except PoolTimeout:
        gw.breaker.suspect()
        return _unhealthy()
    except psycopg.OperationalError:
        gw.breaker.failed()
        return _unhealthy()
    except Exception:  # any failure means not healthy
        return _unhealthy()
    return json_response({"status": "ok", "database": True})


def _unhealthy() -> Response:
    return json_response({"status": "unavailable", "database": False}, 503,
                         {"Retry-After": "2"})


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    if not logging.getLogger().handlers:  # a uvicorn worker process: log as its parent
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    gateway = Gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        remote = gateway.remote_keys
        if remote is not None:  # fetched before the first request, then kept current
            await remote.refresh()
            remote.start()
        logging.getLogger("joinery.start").info(
            summary(settings, remote.current.kids if remote is not None else None))
        await gateway.pool.open(wait=False)
        with contextlib.suppress(Exception):
            await gateway.catalog.load(gateway.pool)
        gateway.hub.start()
        # What exists now lives as long as the process: keep the collector off it,
        # and collect young objects less often (fewer pauses in the latency tail).
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        if gateway.webhooks is not None:
            gateway.webhooks.start()
        if gateway.mailer is not None:
            gateway.mailer.start()
        refresher = asyncio.create_task(gateway.refresh_metrics_forever())
        try:
            yield
        finally:
            refresher.cancel()
            if gateway.mailer is not None:
                await gateway.mailer.stop()
            if gateway.webhooks is not None:
                await gateway.webhooks.stop()
            await gateway.hub.stop()
            if remote is not None:
                await remote.stop()
            await gateway.breaker.stop()
            await gateway.pool.close()
            ACCESS.flush()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        # With METRICS_PORT, /metrics is served there only (gateway/serve.py).
        *([] if settings.metrics_port else [Route("/metrics", metrics, methods=["GET"])]),
        Route("/rest/v1/rpc/{fn}", rpc, methods=["GET", "POST"]),
        Route("/realtime/v1/sse", realtime, methods=["GET"]),
        WebSocketRoute("/realtime/v1/websocket", websocket),
        *(Route(r.path, seed_endpoint(r), methods=[r.method]) for r in SEED_ROUTES),
        *page_routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ApiError: api_error},
                    middleware=[Middleware(
                        CORSMiddleware, allow_origins=list(settings.cors_origins),
                        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                        allow_headers=["authorization", "apikey", "content-type", "prefer",
                                       "accept-profile", "content-profile", "x-client-info",
                                       "x-request-id"],
                        expose_headers=["retry-after", "x-request-id", "content-range"],
                        max_age=86400)])
    # No slash redirects: Starlette's would answer `/join/` with an absolute
    # Location built from the request's Host header (an attacker's, behind a proxy
    # that passes it on). A path with a trailing slash is just not found.
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    # The calls themselves (rpc and seed routes) take the fast path; everything else,
    # and any request from a browser on another origin (CORS), goes through Starlette.
    return FastPath(gateway, Observe(app, gateway.metrics, settings.access_log,
                                     settings.trusted_proxies),  # type: ignore[return-value]
                    settings.access_log)
