"""The fast path: the calls themselves -- /rest/v1/rpc/{fn} and the seed routes --
taken by a pure ASGI callable in front of the Starlette application.

It does what Starlette's router, the CORS middleware and `Observe` do for such a
request, in one pass and with no per-request objects beyond the answer: the
route is matched on the path's segments, the headers read once from the ASGI
scope, and the call answered by `Calls.answer` (http/call.py), the one
implementation of a call, which Starlette's routes for the same URLs use too.
It keeps `Observe`'s request id, metrics and access log.

Everything else goes to the Starlette application as before: other paths, other
methods (405 there), any request carrying an Origin header, so that CORS keeps one
implementation (Starlette's middleware), and any request with a header given twice
(Starlette's side reads the first). tests/test_fast_path.py sends the same
requests both ways and compares the answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from ..client import client_address
from .call import Calls
from .observe import Metrics, access_line, new_request_id, plain_request_id
from .routes import SEED_ROUTES, SeedRoute

RPC_PREFIX = "/rest/v1/rpc/"
RPC_ROUTE = RPC_PREFIX + "{fn}"
_RPC_METHODS = frozenset({"GET", "HEAD", "POST"})


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

    def __init__(self, calls: Calls, metrics: Metrics, app: Callable[..., Any],
                 access_log: bool) -> None:
        self.calls = calls
        self.metrics = metrics
        self.app = app
        self.access_log = access_log
        self.seeds = _seed_table()
        self.trusted = calls.trusted

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
        client = client_address(scope, self.trusted)
        try:
            status = await self.calls.answer(scope, receive, send, seed, function, params,
                                             headers, request_id, client)
        finally:
            seconds = perf_counter() - start
            self.metrics.observe(method, template, status, seconds)
            if self.access_log:
                access_line(request_id, method, template, function, status, seconds, client)
