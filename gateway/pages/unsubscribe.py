"""POST /invite/stop?token=...: the one-click stop of RFC 8058.

Every invitation message carries `List-Unsubscribe: <{APP_URL}/invite/stop?token=...>`
and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`; a mail client that
offers "unsubscribe" POSTs `List-Unsubscribe=One-Click` to that URL, with no
cookie and no sign-in. This stops invitation mail to the address as the stop
page's button does (api.stop_invitations, run as anon). A GET of the same URL
only shows the page (nothing acts on GET)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .. import db
from ..http.errors import ApiError
from . import headers

ONE_CLICK = b"List-Unsubscribe=One-Click"
ANON = db.Identity("anon", {"role": "anon"})


def _answer(text: str, status: int) -> Response:
    return PlainTextResponse(text, status, headers=headers.PAGE)


async def one_click(request: Request) -> Response:
    token = request.query_params.get("token", "")[:200]
    body = (await request.body())[:4096]
    # RFC 8058 sends the key=value pair form-encoded (or as a multipart field).
    if not token or ONE_CLICK not in body.replace(b"%3D", b"="):
        return _answer("A one-click stop is a POST of List-Unsubscribe=One-Click "
                       "to the link of an invitation message.", 400)
    gw = request.app.state.gateway
    try:
        # The client's address (through TRUSTED_PROXIES) as for the page's own
        # call: the one-click POST counts against the same stop_client limit.
        result = await gw.run("stop_invitations", {"token": token}, ANON, "POST",
                              request.url.path, {}, client_addr=gw.client(request.scope))
    except ApiError as exc:
        return _answer("This link is not valid." if exc.status == 404
                       else "The stop could not be done now; try again.", exc.status)
    # stop_invitations answers its refusals (security): an unknown token is a
    # 404 result, over its stop_client / stop_token limits a 429 with Retry-After.
    if result.status == 404:
        return _answer("This link is not valid.", 404)
    if result.status != 200:
        answer = _answer("The stop could not be done now; try again.", result.status)
        for name, value in result.headers.items():
            if name.lower() == "retry-after":
                answer.headers["Retry-After"] = value
        return answer
    return _answer("Done: no more invitation mail will be sent to this address.", 200)
