"""The floor: the least an app on the gateway's server and driver can do for a call,
run beside the gateway in `make bench` (not part of the product).

A bare ASGI callable on the same uvicorn, started the same way (`gateway.serve`,
one process per worker, SO_REUSEPORT): no framework, no middleware, no access log,
no metrics. For POST /rest/v1/rpc/{fn} it checks the bearer token with the same
cached verifier, reads the JSON body as it is, and sends the very script the
gateway sends for that function (begin; set_config of role, claims, method, path,
the same allow-listed headers, statement timeout and time zone; the call; commit)
through the same psycopg pool with client-side binding -- or, with
DB_PREPARED_STATEMENTS=on, the same two prepared statements in one pipeline
(gateway.db.prepared_call) -- then answers the call's JSON text. Errors are
answered 400 with the database's message; nothing else is checked.

Run: GATEWAY_DATABASE_URL=... JWT_SECRET=... PORT=... WORKERS=2 python -m bench.floor"""

from __future__ import annotations

import os
from typing import Any

import orjson
import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from gateway import db
from gateway.client import client_address
from gateway.jwt_auth import CachedVerifier, InvalidToken, JwtConfig, Verifier
from gateway.settings import DEFAULT_SQL_HEADERS, Settings

# The headers the gateway passes to SQL by default, so that both send the same text.
_SQL_HEADERS = frozenset(h.encode() for h in DEFAULT_SQL_HEADERS.split(","))
_JSON = [(b"content-type", b"application/json")]
_PREFIX = "/rest/v1/rpc/"


class Floor:
    def __init__(self) -> None:
        self.verifier = CachedVerifier(Verifier(JwtConfig.from_values(
            os.environ["JWT_SECRET"], None, None)))
        size = int(os.environ.get("POOL_MAX", "16"))
        prepared = Settings.from_env().prepared_statements
        self.pool = AsyncConnectionPool(
            os.environ["GATEWAY_DATABASE_URL"], min_size=size, max_size=size, open=False,
            kwargs={"autocommit": True,
                    "prepare_threshold": db.NEVER_BY_COUNT if prepared else None})
        self.send = db.prepared_call if prepared else db.script_call
        self.catalog = db.Catalog()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        path: str = scope["path"]
        if path == "/healthz":
            await answer(send, 200, b'{"status":"ok"}')
            return
        token = b""
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = value[7:]
            elif name in _SQL_HEADERS:
                headers[name.decode("latin-1")] = value.decode("latin-1")
        try:
            claims = self.verifier.verify(token.decode("latin-1"))
        except InvalidToken:
            await answer(send, 401, b'{"message":"invalid token"}')
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        fns = self.catalog.functions.get(path[len(_PREFIX):]) if path.startswith(_PREFIX) else None
        if not fns:
            await answer(send, 404, b'{"message":"not found"}')
            return
        fn = fns[0]
        values: tuple[Any, ...] = (claims["role"], orjson.dumps(claims).decode(), "POST", path,
                                   orjson.dumps(headers).decode(),
                                   client_address(scope), "8000", "2000")
        if fn.arg_names:
            values += ((body or b"{}").decode(),)
        async with self.pool.connection() as conn:
            try:
                row = await self.send(conn, fn, values, False)
            except psycopg.errors.Error as exc:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    await conn.execute("rollback")
                await answer(send, 400, orjson.dumps({"message": str(exc)}))
                return
        assert row is not None
        await answer(send, 200, row[0].encode() if row[0] is not None else b"null")

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.pool.open(wait=True)
                await self.catalog.load(self.pool)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


def create_app() -> Floor:
    return Floor()


def main() -> None:
    from gateway.serve import serve

    raise SystemExit(serve(os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"]),
                           int(os.environ.get("WORKERS", "2")), app="bench.floor:create_app"))


if __name__ == "__main__":
    main()
