"""One call, request -> call -> response: /rest/v1/rpc/{fn} and the seed routes.

`Calls.answer` is the only implementation. The fast path (http/fast.py) uses it
for the requests it takes; Starlette's routes for the same URLs are ASGI
endpoints (`Calls.endpoint`) that use it too, for the requests the fast path
passes on (a browser on another origin, for CORS, or a header given twice).

It reads the headers once, the body straight from `receive`, identifies the
caller, calls one `api` function in one transaction, shapes the answer (rpc as
it is, a seed route shaped) and writes it as two ASGI messages with the headers
Starlette's Response would add. tests/test_fast_path.py sends the same requests
both ways and compares the answers.

A call is bounded as db.call bounds it (pool wait + statement timeout + 0.5 s),
by a timer instead of a task, a shield and a wait_for per request: at the
deadline the timer answers 503 itself and cancels the call."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from asyncio import CancelledError, current_task, get_running_loop
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from .. import db
from ..client import client_address
from ..errors import ApiError, unavailable
from .arguments import body_missing, check_length, check_profile_value, parse_body
from .observe import FUNCTION_KEY
from .routes import SeedRoute

if TYPE_CHECKING:
    from ..context import Gateway

log = logging.getLogger("joinery.call")

_PROFILE_HEADERS = (b"accept-profile", b"content-profile")
_JSON = (b"content-type", b"application/json")
_SERVER_ERROR = b"Internal Server Error"


class Calls:
    """The calls of one process, over its composition root."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        settings = gateway.settings
        self.sql_headers = settings.sql_headers
        self.cut = settings.sql_header_value_max
        self.trusted = settings.trusted_proxies
        self.limit = settings.max_body_bytes
        self.deadline = db.deadline(gateway.pool, settings.statement_timeout_ms)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        self.loop = get_running_loop()  # one loop per worker process, for its life
        return self.loop

    async def answer(self, scope: dict[str, Any], receive: Any, send: Any,
                     seed: SeedRoute | None, function: str, params: Mapping[str, str],
                     headers: Mapping[bytes, bytes], request_id: str | None,
                     client: str) -> int:
        """Answer one call of api.`function` (rpc when `seed` is None) and return the
        status sent. `headers` holds each request header once; `request_id` is
        added to the answer when given (else a middleware adds it)."""
        method: str = scope["method"]
        status = 500
        started = False
        expired: list[bool] = []  # set by _expire when the call ran past its deadline
        try:
            try:
                who, args = await self._arguments(scope, receive, method, seed, params, headers)
                allowed, cut = self.sql_headers, self.cut
                sql_headers = {k.decode("latin-1"): v[:cut].decode("latin-1")
                               for k, v in scope["headers"] if k in allowed}
                # The call's deadline (db.call's, without a task per call): a timer
                # that answers 503 and abandons the call if it has not answered by then.
                loop = self.loop or self._running_loop()
                timer = loop.call_later(self.deadline, self._expire, current_task(loop), send,
                                        request_id, expired)
                try:
                    result = await self.gateway.run(function, args, who, method, scope["path"],
                                                    sql_headers, bounded=False,
                                                    client_addr=client)
                finally:
                    timer.cancel()
                status, body, out, json = _shape(seed, result)
            except ApiError as exc:
                status, body, out, json = (exc.status, orjson.dumps(exc.body),
                                           _header_list(exc.headers), True)
            if expired:  # answered 503 by _expire; whatever the call ended with is dropped
                return 503
            _complete(out, status, body, json, request_id)
            started = True
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": body})
            return status
        except CancelledError:
            if not expired:
                raise
            return 503  # answered by _expire; the call was abandoned
        except Exception:
            if expired:
                return 503
            log.exception("Exception in a call")
            if started:
                raise
            out = [(b"content-length", b"%d" % len(_SERVER_ERROR)),
                   (b"content-type", b"text/plain; charset=utf-8")]
            if request_id is not None:
                out.append((b"x-request-id", request_id.encode()))
            await send({"type": "http.response.start", "status": 500, "headers": out})
            await send({"type": "http.response.body", "body": _SERVER_ERROR})
            return 500

    def endpoint(self, seed: SeedRoute | None) -> Callable[..., Any]:
        """The ASGI endpoint of a Starlette route (rpc when `seed` is None)."""
        return _Endpoint(self, seed)

    async def _arguments(self, scope: dict[str, Any], receive: Any, method: str,
                         seed: SeedRoute | None, params: Mapping[str, str],
                         headers: Mapping[bytes, bytes]) -> tuple[db.Identity, dict[str, Any]]:
        """The caller and the call's arguments: rpc's from the body (POST) or the
        query string, a seed route's from its path and body."""
        get = headers.get
        if seed is None:
            for name in _PROFILE_HEADERS:
                if (profile := get(name)) is not None:
                    check_profile_value(profile.decode("latin-1"))
        authorization, apikey = get(b"authorization"), get(b"apikey")
        who = await self.gateway.identify(
            authorization.decode("latin-1") if authorization is not None else None,
            apikey.decode("latin-1") if apikey is not None else None)
        if seed is None:
            if method == "POST":
                return who, parse_body(await self._body(receive, get), _text(get(b"content-type")))
            return who, _query(scope)
        body = (parse_body(await self._body(receive, get), _text(get(b"content-type")))
                if seed.takes_body else {})
        query = _query(scope) if seed.from_query and scope["query_string"] else None
        return who, seed.arguments(params, body, query)

    def _expire(self, task: asyncio.Task[Any] | None, send: Any, request_id: str | None,
                expired: list[bool]) -> None:
        """No answer within the deadline: the database is unreachable (e.g. behind
        PgBouncer). 503 at once; the call is cancelled (psycopg cancels the query,
        the connection is closed) while the answer goes out."""
        expired.append(True)
        self.gateway.breaker.failed()
        exc = unavailable()
        headers = _header_list(exc.headers)
        body = orjson.dumps(exc.body)
        _complete(headers, exc.status, body, True, request_id)
        answer = asyncio.ensure_future(_send(send, exc.status, headers, body))
        _answering.add(answer)
        answer.add_done_callback(_answering.discard)
        if task is not None:
            task.cancel()

    async def _body(self, receive: Any, get: Callable[[bytes], bytes | None]) -> bytes:
        check_length(_text(get(b"content-length")), self.limit)
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            raw: bytes = message.get("body", b"")  # the whole body in one message
            if len(raw) > self.limit:
                raise ApiError(413, "PGRST413", "Request body is too large.")
            return raw
        raw = b""
        while True:
            if message["type"] == "http.disconnect":
                raise body_missing()
            raw += message.get("body", b"")
            if len(raw) > self.limit:
                raise ApiError(413, "PGRST413", "Request body is too large.")
            if not message.get("more_body", False):
                return raw
            message = await receive()


class _Endpoint:
    """A Starlette route's endpoint: the same answer, behind Starlette's CORS
    middleware and Observe (which add their headers, the request id, the metrics
    and the access log). An object, not a function, so that Starlette's Route
    takes it as an ASGI application instead of wrapping it as request -> response."""

    def __init__(self, calls: Calls, seed: SeedRoute | None) -> None:
        self.calls = calls
        self.seed = seed

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        params: dict[str, str] = scope["path_params"]
        function = params["fn"] if self.seed is None else self.seed.function
        scope[FUNCTION_KEY] = function  # for Observe's access log
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:  # the first of a header given twice
            headers.setdefault(name, value)
        await self.calls.answer(scope, receive, send, self.seed, function, params, headers,
                                None, client_address(scope, self.calls.trusted))


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


_answering: set[asyncio.Future[None]] = set()


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _shape(seed: SeedRoute | None, result: db.Result
           ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    """(status, body, headers, whether the body is JSON) of a call's result: rpc as
    it is, a seed route shaped."""
    if seed is None or result.status >= 400 or result.body is None:
        return _raw(result)
    shaped = orjson.dumps(seed.shape(orjson.loads(result.body)))
    status = seed.status if result.status == 200 else result.status
    return status, shaped, _header_list(result.headers), True


def _raw(result: db.Result) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    """The function's JSON text as it is (204 without a body when there is none)."""
    headers = _header_list(result.headers)
    if result.body is None:
        return result.status if result.status != 200 else 204, b"", headers, False
    return result.status, result.body.encode(), headers, True


def _header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    if not headers:
        return []
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _complete(headers: list[tuple[bytes, bytes]], status: int, body: bytes, json: bool,
              request_id: str | None) -> None:
    """The headers Starlette's Response adds (content-length unless the status has
    no body, content-type for JSON unless the function set one), and the request id
    when given."""
    names = {name for name, _ in headers} if headers else ()
    if b"content-length" not in names and not (status < 200 or status in (204, 304)):
        headers.append((b"content-length", b"%d" % len(body)))
    if json and b"content-type" not in names:
        headers.append(_JSON)
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))


def _query(scope: Mapping[str, Any]) -> dict[str, str]:
    """The query string's parameters (the last of a repeated name), blank ones kept."""
    return dict(urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"),
                                       keep_blank_values=True))
