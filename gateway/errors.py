"""Errors as PostgREST writes them, and its SQLSTATE -> HTTP status table."""

from __future__ import annotations

from typing import Any

import orjson
from psycopg import errors as pg_errors
from starlette.responses import Response

# First match wins: exact codes, then two-character classes, as PostgREST does.
_EXACT = {
    "23503": 409,
    "23505": 409,
    "40001": 503,  # PostgREST answers 500; the gateway retries these, then 503
    "40P01": 503,
    # lock_not_available: a lock waited for past LOCK_TIMEOUT_MS. PostgREST answers
    # 500 (class 55); here it is a transient overload, nothing was kept: 503.
    "55P03": 503,
    "25006": 405,
    "42883": 404,
    "42P01": 404,
    "42P17": 500,
    "53400": 500,
    "P0001": 400,
}
_CLASSES = {
    "08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500,
    "38": 500, "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500,
    "57": 500, "58": 500, "F0": 500, "HV": 500, "P0": 500, "XX": 500,
}


def sqlstate_status(sqlstate: str | None, role: str) -> int:
    """HTTP status for a PostgreSQL error: PTxyz -> xyz, 42501 -> 401 for anon and
    403 otherwise, then PostgREST's table, else 400."""
    code = sqlstate or ""
    if code.startswith("PT") and code[2:].isdigit() and len(code) == 5:
        return int(code[2:])
    if code == "42501":
        return 401 if role == "anon" else 403
    if code in _EXACT:
        return _EXACT[code]
    return _CLASSES.get(code[:2], 400)


class ApiError(Exception):
    """An error answered by the gateway itself, with PostgREST's body shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "message": message, "details": details, "hint": hint}
        self.headers = headers or {}

    def response(self) -> Response:
        return json_response(self.body, self.status, self.headers)


def from_database(exc: pg_errors.Error, role: str) -> ApiError:
    diag = exc.diag
    status = sqlstate_status(exc.sqlstate, role)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    elif status == 503:
        # A node the call needs is unreachable (on a Citus cluster, a worker that
        # is down: 08006) or the server is short of resources (53xxx): nothing
        # was kept, the call may be sent again. The same for a lock waited for past
        # LOCK_TIMEOUT_MS (55P03): the call was rolled back.
        headers["Retry-After"] = "2"
    return ApiError(
        status,
        exc.sqlstate or "PGRST000",
        diag.message_primary or str(exc),
        diag.message_detail,
        diag.message_hint,
        headers,
    )


def try_again(exc: pg_errors.Error) -> ApiError:
    """A deadlock or serialization failure that persisted through the gateway's
    retries (db.TRIES): nothing was kept, the client may send the call again."""
    return ApiError(
        503, exc.sqlstate or "40001", exc.diag.message_primary or str(exc),
        hint="The call was rolled back after conflicting with others; retry it.",
        headers={"Retry-After": "1"},
    )


def unavailable() -> ApiError:
    return ApiError(
        503, "PGRST001", "Database is unavailable.",
        hint="Retry in a few seconds.", headers={"Retry-After": "2"},
    )


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def invalid_token(message: str) -> ApiError:
    """401 for a token that does not verify, as PostgREST answers it."""
    code = "PGRST303" if message == "token has expired" else "PGRST301"
    return ApiError(401, code, message, headers={
        "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{message}"'})
