"""The HTTP handlers other than the calls (those are http/call.py): the OpenAPI
document, /metrics, /healthz, and the answer to an ApiError."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ApiError, json_response, unavailable
from . import openapi

if TYPE_CHECKING:
    from ..context import Gateway


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
