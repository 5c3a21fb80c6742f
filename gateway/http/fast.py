"""The fast path: the calls themselves -- /rest/v1/rpc/{fn} and the seed routes --
answered by a pure ASGI callable in front of the Starlette application.

It does what the Starlette handlers, the CORS middleware and `Observe` do for such
a request, in one pass and with no per-request objects beyond the answer: the
headers are read once from the ASGI scope, the body straight from `receive`, and
the answer written as two ASGI messages. The rules are the same code (identity,
body parsing, the call): only the framework around them is left out. It keeps
`Observe`'s request id, metrics and access log.

Everything else goes to the Starlette application as before: other paths, other
methods (405 there), and any request carrying an Origin header, so that CORS keeps
one implementation (Starlette's middleware)."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .. import db
from .arguments import body_missing, check_length, check_profile_value, parse_body
from .errors import ApiError, unavailable
from .observe import access_line, new_request_id, plain_request_id
from .routes import SEED_ROUTES, SeedRoute

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("joinery.fast")

RPC_PREFIX = "/rest/v1/rpc/"
RPC_ROUTE = RPC_PREFIX + "{fn}"
_RPC_METHODS = frozenset({"GET", "HEAD", "POST"})
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
        self.limit = settings.max_body_bytes

    def _route(self, method: str, path: str) -> tuple[str, SeedRoute | None, dict[str, str]] | None:
        """(route template, seed route or None for rpc, path parameters), or None."""
        if path.startswith(RPC_PREFIX):
            name = path[len(RPC_PREFIX):]
            if name and "/" not in name and method in _RPC_METHODS:
                return RPC_ROUTE, None, {"fn": name}
            return None
        parts = path.split("/")
        for seed in self.seeds.get(len(parts), ()):
            params = seed.match(parts)
            if params is not None:
                # A path of a seed route with another method: Starlette answers 405.
                return (seed.route.path, seed.route, params) if method in seed.methods else None
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        found = self._route(method, scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        # One pass over the headers: what this path reads, and what goes to SQL.
        authorization = apikey = content_type = length = request_id = None
        profiles: list[str] = []
        sql_headers: dict[str, str] = {}
        allowed, cut = self.sql_headers, self.cut
        for name, value in scope["headers"]:
            if name == b"origin":
                await self.app(scope, receive, send)  # CORS: Starlette's middleware
                return
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"apikey":
                apikey = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"x-request-id" and request_id is None:
                request_id = plain_request_id(value)  # the first plain one, as Observe
            elif name in (b"accept-profile", b"content-profile"):
                profiles.append(value.decode("latin-1"))
            if name in allowed:
                sql_headers[name.decode("latin-1")] = value[:cut].decode("latin-1")
        if request_id is None:
            request_id = new_request_id()
        template, seed, params = found
        start = time.perf_counter()
        status = 500
        started = False
        expired: list[bool] = []  # set by _expire when the call ran past its deadline
        function = seed.function if seed is not None else params["fn"]
        try:
            try:
                who, args = await self._arguments(
                    scope, receive, method, seed, params, authorization, apikey, content_type,
                    length, profiles)
                # The call's deadline (db.call's, without a task per call): a timer
                # that answers 503 and abandons the call if it has not answered by then.
                gw = self.gateway
                timer = asyncio.get_running_loop().call_later(
                    db.deadline(gw.pool, gw.settings.statement_timeout_ms), self._expire,
                    asyncio.current_task(), send, request_id, expired)
                try:
                    result = await gw.run(function, args, who, method, scope["path"],
                                          sql_headers, bounded=False)
                finally:
                    timer.cancel()
                status, body, headers, json = _shape(seed, result)
            except ApiError as exc:
                status, body, headers, json = (exc.status, orjson.dumps(exc.body),
                                               _header_list(exc.headers), True)
            if expired:  # answered 503 by _expire; whatever the call ended with is dropped
                status = 503
                return
            _complete(headers, status, body, json, request_id)
            started = True
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except asyncio.CancelledError:
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
            seconds = time.perf_counter() - start
            self.gateway.metrics.observe(method, template, status, seconds)
            if self.access_log:
                access_line(request_id, method, template, function, status, seconds)

    async def _arguments(self, scope: dict[str, Any], receive: Any, method: str,
                         seed: SeedRoute | None, params: dict[str, str],
                         authorization: str | None, apikey: str | None,
                         content_type: str | None, length: str | None, profiles: list[str],
                         ) -> tuple[db.Identity, dict[str, Any]]:
        """The caller and the call's arguments, as the Starlette handlers take them."""
        gw = self.gateway
        if seed is None:
            for profile in profiles:
                check_profile_value(profile)
        who = gw.identify(authorization, apikey)
        if seed is None:
            if method == "POST":
                return who, parse_body(await self._body(receive, length), content_type)
            return who, dict(urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"),
                                                    keep_blank_values=True))
        body = (parse_body(await self._body(receive, length), content_type)
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

    async def _body(self, receive: Any, length: str | None) -> bytes:
        check_length(length, self.limit)
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise body_missing()
            raw += message.get("body", b"")
            if len(raw) > self.limit:
                raise ApiError(413, "PGRST413", "Request body is too large.")
            if not message.get("more_body", False):
                return raw


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
