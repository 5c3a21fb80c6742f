"""The baseline: the invite join a user would otherwise write in application code
(the seed's approach), not part of the product.

POST /join {code}: the same JWT check as the gateway, then, on a superuser
connection (no RLS), each statement its own autocommit round trip:
  1. select the invite (and its group's name) by code;
  2. check revoked, expiry and use_count < max_uses in Python;
  3. insert the membership;
  4. update ... set use_count = use_count + 1.
No rate limit and no audit entry (ours does both). It reads and writes
baseline.group_invites, a copy of app.group_invites without the check constraint
on use_count, so that it can over-consume as such code does in production.

Run: BASELINE_DATABASE_URL=... JWT_SECRET=... PORT=... python -m bench.baseline"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.jwt_auth import CachedVerifier, InvalidToken, JwtConfig, Verifier

COPY_TABLE = """
drop schema if exists baseline cascade;
create schema baseline;
create table baseline.group_invites (like app.group_invites including defaults including indexes);
insert into baseline.group_invites select * from app.group_invites;
analyze baseline.group_invites;
"""
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SELECT_INVITE = """
select i.id, i.group_id, i.expires_at, i.max_uses, i.use_count, i.revoked_at, g.name
from baseline.group_invites i join app.groups g on g.id = i.group_id
where i.code_hash = %s
"""
INSERT_MEMBER = """
insert into app.group_members (group_id, user_id, role, invite_id)
values (%s, %s, 'member', %s)
on conflict do nothing
returning created_at
"""
INCREMENT = "update baseline.group_invites set use_count = use_count + 1 where id = %s"


def prepare(database_url: str) -> None:
    """Creates baseline.group_invites, a copy of app.group_invites without its check."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(COPY_TABLE)


def answer(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def create_app() -> Starlette:
    verifier = CachedVerifier(Verifier(JwtConfig.from_values(
        os.environ["JWT_SECRET"], None, None)))
    size = int(os.environ.get("POOL_MAX", "16"))
    pool = AsyncConnectionPool(os.environ["BASELINE_DATABASE_URL"], min_size=size,
                               max_size=size, open=False, kwargs={"autocommit": True})

    async def join(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise InvalidToken("missing token")
            claims = verifier.verify(token.strip())
        except InvalidToken as exc:
            return answer({"error": str(exc)}, 401)
        try:
            code = str(orjson.loads(await request.body()).get("code", "")).lower()
        except (orjson.JSONDecodeError, AttributeError):
            return answer({"error": "invalid body"}, 400)
        if not UUID_RE.match(code):
            return answer({"error": "invalid code"}, 400)
        async with pool.connection() as conn:
            row = await (await conn.execute(
                SELECT_INVITE, (hashlib.sha256(code.encode()).digest(),))).fetchone()
            if row is None:
                return answer({"error": "code not found"}, 404)
            invite_id, group_id, expires_at, max_uses, use_count, revoked_at, name = row
            if revoked_at is not None or (
                    expires_at is not None and expires_at <= dt.datetime.now(dt.UTC)):
                return answer({"error": "code expired"}, 410)
            if max_uses is not None and use_count >= max_uses:
                return answer({"error": "code used up"}, 410)
            member = await (await conn.execute(
                INSERT_MEMBER, (group_id, claims["sub"], invite_id))).fetchone()
            if member is None:
                return answer({"error": "already a member"}, 409)
            await conn.execute(INCREMENT, (invite_id,))
        return answer({"success": True, "group": {"id": str(group_id), "name": name},
                       "membership": {"user_id": claims["sub"], "group_id": str(group_id),
                                      "joined_at": member[0].isoformat()}})

    async def healthz(request: Request) -> Response:
        return answer({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pool.open(wait=True)
        try:
            yield
        finally:
            await pool.close()

    return Starlette(routes=[Route("/join", join, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])], lifespan=lifespan)


def main() -> None:
    import uvicorn

    uvicorn.run("bench.baseline:create_app", factory=True,
                host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8100")),
                workers=int(os.environ.get("WORKERS", "2")), access_log=False,
                log_level="warning")


if __name__ == "__main__":
    main()
