"""The Starlette application, assembled: the routes of every surface (http/,
realtime/, pages/) around one composition root (gateway/context.py), and the
lifespan that owns the pool."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route, WebSocketRoute

from .context import Gateway
from .errors import ApiError
from .http.call import Calls
from .http.fast import FastPath
from .http.handlers import api_error, healthz, metrics, openapi_json
from .http.observe import ACCESS, Observe
from .http.routes import SEED_ROUTES
from .pages import routes as page_routes
from .realtime.socket import websocket
from .realtime.sse import realtime
from .settings import Settings
from .startup import summary


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    if not logging.getLogger().handlers:  # a uvicorn worker process: log as its parent
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    gateway = Gateway(settings)
    calls = Calls(gateway)  # the one implementation of a call, on both paths below

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
        Route("/rest/v1/rpc/{fn}", calls.endpoint(None), methods=["GET", "POST"]),
        Route("/realtime/v1/sse", realtime, methods=["GET"]),
        WebSocketRoute("/realtime/v1/websocket", websocket),
        *(Route(r.path, calls.endpoint(r), methods=[r.method]) for r in SEED_ROUTES),
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
    return FastPath(calls, gateway.metrics,  # type: ignore[return-value]
                    Observe(app, gateway.metrics, settings.access_log, settings.trusted_proxies),
                    settings.access_log)
