"""GET /realtime/v1/sse: Server-Sent Events for the topics the caller may
subscribe to (api.can_subscribe decides each one), fed by the hub."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..http.errors import ApiError, unavailable
from .hub import LISTENER_WAIT

if TYPE_CHECKING:
    from ..http.app import Gateway


async def realtime(request: Request) -> Response:
    """GET /realtime/v1/sse?topic=...: Server-Sent Events for the topics the caller
    may subscribe to (api.can_subscribe decides each one)."""
    gw: Gateway = request.app.state.gateway
    topics = list(dict.fromkeys(request.query_params.getlist("topic")))
    if not 1 <= len(topics) <= 20:
        raise ApiError(400, "PGRST100", "Give between 1 and 20 topic parameters.")
    who = gw.identity(request, query_token=True)
    for topic in topics:
        allowed = await gw.invoke(request, "can_subscribe", {"topic": topic}, who)
        if allowed.status != 200:
            return Response(allowed.body, allowed.status, allowed.headers,
                            media_type="application/json")
        if allowed.body != "true":
            raise ApiError(403, "PT403", f"You cannot subscribe to {topic[:80]!r}.")
    if not await gw.hub.wait_connected(LISTENER_WAIT):
        raise unavailable()
    return StreamingResponse(
        gw.hub.stream(topics, gw.settings.sse_heartbeat), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
