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

import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .. import db
from .arguments import body_missing, check_length, check_profile_value, parse_body
from .errors import ApiError
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
        function = seed.function if seed is not None else params["fn"]
        try:
            try:
                status, body, headers, json = await self._answer(
                    scope, receive, method, seed, params, function, authorization, apikey,
                    content_type, length, profiles, sql_headers)
            except ApiError as exc:
                status, body, headers, json = (exc.status, orjson.dumps(exc.body),
                                               _header_list(exc.headers), True)
            _complete(headers, status, body, json, request_id)
            started = True
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except Exception:
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

    async def _answer(self, scope: dict[str, Any], receive: Any, method: str,
                      seed: SeedRoute | None, params: dict[str, str], function: str,
                      authorization: str | None, apikey: str | None, content_type: str | None,
                      length: str | None, profiles: list[str], sql_headers: dict[str, str],
                      ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
        """(status, body, headers, whether the body is JSON) of a call, as the
        Starlette handlers answer it."""
        gw = self.gateway
        if seed is None:
            for profile in profiles:
                check_profile_value(profile)
        who = gw.identify(authorization, apikey)
        if seed is None:
            if method == "POST":
                args = parse_body(await self._body(receive, length), content_type)
            else:
                args = dict(urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"),
                                                   keep_blank_values=True))
        else:
            body = (parse_body(await self._body(receive, length), content_type)
                    if seed.takes_body else {})
            args = seed.arguments(params, body)
        result = await gw.run(function, args, who, method, scope["path"], sql_headers)
        if seed is None or result.status >= 400 or result.body is None:
            return _raw(result)
        shaped = orjson.dumps(seed.shape(orjson.loads(result.body)))
        status = seed.status if result.status == 200 else result.status
        return status, shaped, _header_list(result.headers), True

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
