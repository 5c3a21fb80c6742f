"""The pages. Each GET only renders: previews, accepting, declining, joining and
stopping are done by the page's script, through the API, after a person signs
in; acting needs a click (a POST to /rest/v1/rpc/...)."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .render import page


def _code(request: Request) -> str:
    return request.query_params.get("code", "")[:200]


async def index(request: Request) -> HTMLResponse:
    return page(request, "index.html", script="index")


async def docs(request: Request) -> HTMLResponse:
    return page(request, "docs.html", script="docs")


async def accept(request: Request) -> HTMLResponse:
    """/invite/accept?code=...: the pair invitation behind the mail's link."""
    return page(request, "accept.html", script="accept", code=_code(request))


async def join(request: Request) -> HTMLResponse:
    """/join?code=...: a shared group invite code."""
    return page(request, "join.html", script="join", code=_code(request))


async def event(request: Request) -> Response:
    """/events/{id}: invite a partner to register as a pair (seed 004's dialog)."""
    try:
        event_id = str(uuid.UUID(request.path_params["event_id"]))
    except ValueError:
        return page(request, "missing.html", status=404, script="common")
    return page(request, "event.html", script="event", event_id=event_id)


async def stop(request: Request) -> HTMLResponse:
    """/invite/stop?token=...: stop invitation mail to an address."""
    return page(request, "stop.html", script="stop",
                has_token=bool(request.query_params.get("token")))


async def groups(request: Request) -> Response:
    """/events/{id}/groups: the authors' approval queue. Who may see it is known
    only once the page's script calls the API with the person's token; anyone
    else, and any unknown id, gets the same "not found"."""
    try:
        event_id = str(uuid.UUID(request.path_params["event_id"]))
    except ValueError:
        return page(request, "missing.html", status=404, script="common")
    return page(request, "groups.html", script="groups", event_id=event_id)
