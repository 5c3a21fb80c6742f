"""What a request carries besides its token: the arguments in its body, and the
schema profile it asks for. Shared by the Starlette handlers and the fast path."""

from __future__ import annotations

import urllib.parse
from typing import Any

import orjson

from ..errors import ApiError

# PostgREST exposes one schema here; supabase clients ask for "public" by default.
_PROFILES = frozenset({"api", "public"})


def check_length(declared: str | None, limit: int) -> None:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "PGRST413", "Request body is too large.")


def body_missing() -> ApiError:
    return ApiError(408, "PT408", "The request body did not arrive.")


def parse_body(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """The arguments in a request body: a JSON object, or a form."""
    if not raw.strip():
        return {}
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        form = urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return dict(form)
    if media not in ("application/json", "text/plain", ""):
        raise ApiError(415, "PGRST107", f"Content-Type {media!r} is not acceptable; send JSON.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "PGRST102", "Request body is not valid JSON.", str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "PGRST102", "Request body must be a JSON object of arguments.")
    return body


def check_profile_value(profile: str | None) -> None:
    if profile is not None and profile not in _PROFILES:
        raise ApiError(406, "PGRST106", f"The schema must be one of {sorted(_PROFILES)}.")
