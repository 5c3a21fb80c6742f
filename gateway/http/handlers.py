"""The HTTP handlers: authenticate, call one `api` function, shape the answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from .. import db
from ..errors import ApiError, json_response, unavailable
from . import openapi
from .arguments import body_missing, check_length, check_profile_value, parse_body
from .routes import SeedRoute

if TYPE_CHECKING:
    from ..context import Gateway


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
