"""The fast path: the calls themselves -- /rest/v1/rpc/{fn} and the seed routes --
answered by a pure ASGI callable in front of the Starlette application.

It does what the Starlette handlers, the CORS middleware and `Observe` do for such
a request, in one pass and with no per-request objects beyond the answer: the
headers are read once from the ASGI scope, the body straight from `receive`, and
the answer written as two ASGI messages. The rules are the same code (identity,
body parsing, the call): only the framework around them is left out. It keeps
`Observe`'s request id, metrics and access log.

Everything else goes to the Starlette application as before: other paths, other
methods (405 there), any request carrying an Origin header, so that CORS keeps one
implementation (Starlette's middleware), and any request with a header given twice
(Starlette reads the first). tests/test_fast_path.py sends the same requests both
ways and compares the answers.

A call is bounded as db.call bounds it (pool wait + statement timeout + 0.5 s),
by a timer instead of a task, a shield and a wait_for per request: at the
deadline the timer answers 503 itself and cancels the call."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from asyncio import CancelledError, current_task, get_running_loop
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson

from .. import db
from .arguments import body_missing, check_length, check_profile_value, parse_body
from .client import client_address
from .errors import ApiError, unavailable
from .observe import access_line, new_request_id, plain_request_id
from .routes import SEED_ROUTES, SeedRoute

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("joinery.fast")

RPC_PREFIX = "/rest/v1/rpc/"
RPC_ROUTE = RPC_PREFIX + "{fn}"
_RPC_METHODS = frozenset({"GET", "HEAD", "POST"})
_PROFILE_HEADERS = (b"accept-profile", b"content-profile")
_JSON = (b"content-type", b"application/json")
_SERVER_ERROR = b"Internal Server Error"


@dataclass(frozen=True)
class _Seed:
    """A seed route split into path segments: literals, and parameter names."""

    route: SeedRoute
    methods: frozenset[str]
    segments: tuple[tuple[bool, str], ...]  # (is a parameter, literal or name)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for (is_param, text), part in zip(self.segments, parts, strict=True):
            if is_param:
                if not part:
                    return None
                params[text] = part
            elif part != text:
                return None
        return params


def _seed_table() -> dict[int, list[_Seed]]:
    """Seed routes by number of path segments, in declaration order (first match wins,
    as in Starlette's router). GET routes take HEAD too, as Starlette's do."""
    table: dict[int, list[_Seed]] = {}
    for route in SEED_ROUTES:
        parts = route.path.split("/")
        segments = tuple((p.startswith("{") and p.endswith("}"), p.strip("{}")) for p in parts)
        methods = frozenset({route.method, "HEAD"} if route.method == "GET" else {route.method})
        table.setdefault(len(parts), []).append(_Seed(route, methods, segments))
    return table


class FastPath:
    """See the module's docstring. `app` is the whole application (Observe around
    Starlette), which serves whatever this does not."""

    def __init__(self, gateway: Gateway, app: Callable[..., Any], access_log: bool) -> None:
        self.gateway = gateway
        self.app = app
        self.access_log = access_log
        self.seeds = _seed_table()
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

    def _seed(self, method: str, path: str) -> tuple[SeedRoute, dict[str, str]] | None:
        """The seed route of a path and method, with its path parameters, or None."""
        parts = path.split("/")
        for seed in self.seeds.get(len(parts), ()):
            params = seed.match(parts)
            if params is not None:
                # A path of a seed route with another method: Starlette answers 405.
                return (seed.route, params) if method in seed.methods else None
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        seed: SeedRoute | None = None
        params: dict[str, str] = {}
        if path.startswith(RPC_PREFIX):
            function = path[len(RPC_PREFIX):]
            if not function or "/" in function or method not in _RPC_METHODS:
                await self.app(scope, receive, send)
                return
            template = RPC_ROUTE
        else:
            found = self._seed(method, path)
            if found is None:
                await self.app(scope, receive, send)
                return
            seed, params = found
            template, function = seed.path, seed.function
        raw_headers = scope["headers"]
        headers = dict(raw_headers)
        # A browser on another origin (CORS), or a header given twice: Starlette.
        if b"origin" in headers or len(headers) != len(raw_headers):
            await self.app(scope, receive, send)
            return
        given_id = headers.get(b"x-request-id")
        request_id = (given_id is not None and plain_request_id(given_id)) or new_request_id()
        start = perf_counter()
        status = 500
        started = False
        expired: list[bool] = []  # set by _expire when the call ran past its deadline
        client = client_address(scope, self.trusted)
        try:
            try:
                who, args = await self._arguments(scope, receive, method, seed, params, headers)
                allowed, cut = self.sql_headers, self.cut
                sql_headers = {k.decode("latin-1"): v[:cut].decode("latin-1")
                               for k, v in raw_headers if k in allowed}
                # The call's deadline (db.call's, without a task per call): a timer
                # that answers 503 and abandons the call if it has not answered by then.
                loop = self.loop or self._running_loop()
                timer = loop.call_later(self.deadline, self._expire, current_task(loop), send,
                                        request_id, expired)
                try:
                    result = await self.gateway.run(function, args, who, method, path,
                                                    sql_headers, bounded=False,
                                                    client_addr=client)
                finally:
                    timer.cancel()
                status, body, out, json = _shape(seed, result)
            except ApiError as exc:
                status, body, out, json = (exc.status, orjson.dumps(exc.body),
                                           _header_list(exc.headers), True)
            if expired:  # answered 503 by _expire; whatever the call ended with is dropped
                status = 503
                return
            _complete(out, status, body, json, request_id)
            started = True
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": body})
        except CancelledError:
            if not expired:
                raise
            status = 503  # answered by _expire; the call was abandoned
        except Exception:
            if expired:
                status = 503
                return
            status = 500
            log.exception("Exception in a call on the fast path")
            if started:
                raise
            await send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-length", b"%d" % len(_SERVER_ERROR)),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"x-request-id", request_id.encode())]})
            await send({"type": "http.response.body", "body": _SERVER_ERROR})
        finally:
            seconds = perf_counter() - start
            self.gateway.metrics.observe(method, template, status, seconds)
            if self.access_log:
                access_line(request_id, method, template, function, status, seconds, client)

    async def _arguments(self, scope: dict[str, Any], receive: Any, method: str,
                         seed: SeedRoute | None, params: dict[str, str],
                         headers: dict[bytes, bytes]) -> tuple[db.Identity, dict[str, Any]]:
        """The caller and the call's arguments, as the Starlette handlers take them."""
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
            return who, dict(urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"),
                                                    keep_blank_values=True))
        body = (parse_body(await self._body(receive, get), _text(get(b"content-type")))
                if seed.takes_body else {})
        return who, seed.arguments(params, body)

    def _expire(self, task: asyncio.Task[Any] | None, send: Any, request_id: str,
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


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


_answering: set[asyncio.Future[None]] = set()


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _shape(seed: SeedRoute | None, result: db.Result
           ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    """(status, body, headers, whether the body is JSON) of a call's result, as the
    Starlette handlers answer it: rpc as it is, a seed route shaped."""
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
              request_id: str) -> None:
    """The headers Starlette's Response adds (content-length unless the status has
    no body, content-type for JSON unless the function set one), and the request id."""
    names = {name for name, _ in headers} if headers else ()
    if b"content-length" not in names and not (status < 200 or status in (204, 304)):
        headers.append((b"content-length", b"%d" % len(body)))
    if json and b"content-type" not in names:
        headers.append(_JSON)
    headers.append((b"x-request-id", request_id.encode()))
