"""GET /realtime/v1/sse: Server-Sent Events for the topics the caller may
subscribe to (api.can_subscribe decides each one), fed by the hub.

Bounded: at most SSE_MAX_STREAMS streams per process (503 beyond) and
REALTIME_PER_USER streams plus socket channels per user (429 beyond), counted
before any topic is checked, so a refused client costs no database work; the
checks themselves share REALTIME_AUTH_CONCURRENCY transactions per process. A
stream ends with an `expired` event at its token's `exp`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import ApiError, unavailable
from .access import LimitReached
from .hub import LISTENER_WAIT

if TYPE_CHECKING:
    from ..context import Gateway

RETRY_AFTER = "5"


class HeldStream(StreamingResponse):
    """A streaming response that gives back its slot when it ends, however it
    ends (also when the client left before the first byte)."""

    def __init__(self, held: contextlib.ExitStack, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.held:
            await super().__call__(scope, receive, send)


def limit_error(exc: LimitReached) -> ApiError:
    if exc.per_user:
        return ApiError(429, "PT429", str(exc), headers={"Retry-After": RETRY_AFTER})
    return ApiError(503, "PT503", str(exc), headers={"Retry-After": RETRY_AFTER})


def take_slot(gw: Gateway, claims: dict[str, Any]) -> contextlib.ExitStack:
    """The stream's slot, to be closed when the stream ends (or is refused)."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(gw.access.stream(claims))
    except LimitReached as exc:
        raise limit_error(exc) from None
    return stack


async def realtime(request: Request) -> Response:
    """GET /realtime/v1/sse?topic=...: Server-Sent Events for the topics the caller
    may subscribe to (api.can_subscribe decides each one)."""
    gw: Gateway = request.app.state.gateway
    limit = gw.settings.sse_max_topics
    topics = list(dict.fromkeys(request.query_params.getlist("topic")))
    if not 1 <= len(topics) <= limit:
        raise ApiError(400, "PGRST100", f"Give between 1 and {limit} topic parameters.")
    who = await gw.identity(request, query_token=True)
    held = take_slot(gw, who.claims)
    handed_over = False
    try:
        for topic in topics:
            allowed = await gw.access.can_subscribe(gw, who, topic, "GET",
                                                    request.scope["path"],
                                                    gw.client(request.scope))
            if allowed.status != 200:
                return Response(allowed.body, allowed.status, allowed.headers,
                                media_type="application/json")
            if allowed.body != "true":
                raise ApiError(403, "42501", f"You cannot subscribe to {topic[:80]!r}.")
        if not await gw.hub.wait_connected(LISTENER_WAIT):
            raise unavailable()
        exp = who.claims.get("exp")
        until = float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) \
            else None
        response = HeldStream(
            held, gw.hub.stream(topics, gw.settings.sse_heartbeat, until),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        handed_over = True
        return response
    finally:
        if not handed_over:
            held.close()
