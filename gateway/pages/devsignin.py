"""Development sign-in: pick or create a user and get a token, as a Supabase
Auth redirect would give one (`redirect_to#access_token=...`).

It exists only in development mode (JOINERY_ENV=development, loopback HOST)
while the gateway verifies tokens with the development secret (DEV_JWT_SECRET,
public in this repository, so anyone can mint tokens then anyway); otherwise,
with any other secret, or a JWKS alone, both routes answer 404 and no token
is minted. Users are created through DATABASE_URL (an owner
connection), which the gateway otherwise never uses."""

from __future__ import annotations

import re
import urllib.parse

import psycopg
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from ..jwt_auth import mint
from ..settings import DEV_JWT_SECRET
from . import headers
from .render import page, settings_of

TOKEN_SECONDS = 8 * 3600
# The account with this email, made when missing as Supabase Auth makes one: the
# row carries its own `id` (Supabase's auth.users has no default for it) and no
# ON CONFLICT clause (Supabase's unique index on email is partial, so
# `on conflict (lower(email))` matches no constraint there). Works on that table
# and on the one the migrations make where there is none. Parameters: email
# (lower case), meta (raw_user_meta_data).
SIGN_UP_SQL = """
with found as (
    select u.id, u.email from auth.users u
    where lower(u.email) = %(email)s order by u.created_at nulls last limit 1
), made as (
    insert into auth.users (id, email, raw_user_meta_data, created_at, updated_at)
    select gen_random_uuid(), %(email)s, %(meta)s, now(), now()
    where not exists (select from found)
    returning id, email
)
select id::text, email::text from found union all select id::text, email::text from made
"""
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The page's sign-in nonce (common.js), echoed back beside the token as `state`.
_STATE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _state(value: object) -> str:
    text = str(value or "")
    return text if _STATE.match(text) else ""


def _not_found() -> Response:
    return PlainTextResponse("Not Found", 404, headers=headers.PAGE)


def _enabled(request: Request) -> bool:
    settings = settings_of(request)
    return settings.dev_sign_in and settings.development \
        and settings.jwt_secret == DEV_JWT_SECRET


def safe_redirect(target: str) -> str:
    """A path on this site (never another origin), else "/"."""
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") \
            or parts.path.startswith("//") or "\\" in target:
        return "/"
    return urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))


async def form(request: Request) -> Response:
    if not _enabled(request):
        return _not_found()
    async with await psycopg.AsyncConnection.connect(
            settings_of(request).admin_database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "select u.id::text, u.email, coalesce(p.display_name, '') from auth.users u "
            "left join app.profiles p on p.id = u.id order by u.created_at desc limit 12")
        users = await cur.fetchall()
    return page(request, "devsignin.html", script="common", users=users,
                redirect_to=safe_redirect(request.query_params.get("redirect_to", "/")),
                state=_state(request.query_params.get("state")))


async def sign_in(request: Request) -> Response:
    if not _enabled(request):
        return _not_found()
    # A form of this site only. With no-referrer pages Chromium sends Origin: null,
    # so the fetch metadata header decides where browsers send it.
    site = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    fetch_site = request.headers.get("sec-fetch-site")
    if (origin is not None and origin not in (site, "null")) \
            or fetch_site not in (None, "same-origin", "none"):
        return PlainTextResponse("Cross-site sign-in refused", 403, headers=headers.PAGE)
    if int(request.headers.get("content-length") or 0) > 4096:
        return PlainTextResponse("Too large", 413, headers=headers.PAGE)
    data = dict(urllib.parse.parse_qsl((await request.body())[:4096].decode("utf-8", "replace")))
    target = safe_redirect(str(data.get("redirect_to", "/")))
    user_id = str(data.get("user_id", "")).strip()
    email = str(data.get("email", "")).strip().lower()
    name = str(data.get("display_name", "")).strip()[:80]
    async with await psycopg.AsyncConnection.connect(
            settings_of(request).admin_database_url, autocommit=True) as conn:
        if user_id:
            cur = await conn.execute(
                "select id::text, email from auth.users where id::text = %s", (user_id,))
        elif _EMAIL.match(email) and len(email) <= 254:
            meta = psycopg.types.json.Jsonb({"display_name": name} if name else {})
            cur = await conn.execute(SIGN_UP_SQL, {"email": email, "meta": meta})
        else:
            return PlainTextResponse("Give an email address", 400, headers=headers.PAGE)
        row = await cur.fetchone()
    if row is None:
        return PlainTextResponse("No such user", 404, headers=headers.PAGE)
    secret = settings_of(request).jwt_secret
    assert secret == DEV_JWT_SECRET  # never mint with a real secret
    token = mint(secret, row[0], email=row[1], expires_in=TOKEN_SECONDS)
    values: dict[str, str | int] = {
        "access_token": token, "token_type": "bearer", "expires_in": TOKEN_SECONDS,
        "type": "magiclink"}
    if state := _state(data.get("state")):
        values["state"] = state
    fragment = urllib.parse.urlencode(values)
    return RedirectResponse(f"{target}#{fragment}", 303, headers=headers.PAGE)
