"""What `serve` checks before it starts, and the one line each process logs at start.

Outside development mode (JOINERY_ENV=development) the gateway refuses to start
without a key of its own: no key source, the development secret (public in this
repository) or a secret shorter than 32 bytes would let anyone sign tokens.
Development mode serves the development sign-in, so it listens on loopback only."""

from __future__ import annotations

import os
import urllib.parse

from .jwks import check_url
from .jwt_auth import JwtConfig
from .settings import DEV_JWT_SECRET, Settings, is_loopback

MIN_SECRET_BYTES = 32
_SET_A_KEY = "set JWT_SECRET (HS256, at least 32 bytes), JWT_JWKS or JWT_JWKS_URL"


def start_problem(settings: Settings) -> str | None:
    """Why the gateway must not start with these settings (one line), or None."""
    if settings.development:
        if not is_loopback(settings.host):
            return (f"JOINERY_ENV=development serves the development sign-in and trusts the "
                    f"development secret, so it listens on loopback only, not HOST="
                    f"{settings.host}: set HOST=127.0.0.1, or unset JOINERY_ENV and {_SET_A_KEY}")
    else:
        secret = settings.jwt_secret
        if not (secret or settings.jwt_jwks or settings.jwt_jwks_url):
            return f"no key to verify tokens with: {_SET_A_KEY}"
        if secret == DEV_JWT_SECRET:
            return ("JWT_SECRET is the development secret, public in this repository: "
                    f"{_SET_A_KEY} of your own (JOINERY_ENV=development to develop)")
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            return (f"JWT_SECRET is {len(secret.encode())} bytes, shorter than "
                    f"{MIN_SECRET_BYTES}: {_SET_A_KEY}")
    if settings.jwt_secret is not None and len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        return f"JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes: {_SET_A_KEY}"
    try:
        jwt_config(settings)
    except ValueError as exc:
        return f"{exc}: {_SET_A_KEY}"
    if settings.jwt_jwks_url:
        try:
            check_url(settings.jwt_jwks_url)
        except ValueError as exc:
            return str(exc)
    if not 0 < settings.jwks_min_refresh <= settings.jwks_max_age:
        return (f"JWKS_MIN_REFRESH ({settings.jwks_min_refresh:g}) must be above 0 and at most "
                f"JWKS_MAX_AGE ({settings.jwks_max_age:g})")
    return None


def jwt_config(settings: Settings) -> JwtConfig:
    return JwtConfig.from_values(settings.jwt_secret, settings.jwt_jwks, settings.jwt_aud,
                                 require_exp=settings.jwt_require_exp)


# Shown on their own in the start-up line, or never (secrets, connection strings).
_NOT_LIMITS = frozenset({
    "database_url", "listen_database_url", "admin_database_url", "jwt_secret", "jwt_jwks",
    "jwt_jwks_url", "jwt_aud", "host", "port", "pool_min", "pool_max", "pool_timeout",
    "prepared_statements", "app_url", "smtp_url", "mail_from", "env", "sign_in_url",
    "sql_headers", "cors_origins", "jwt_require_exp", "jwks_min_refresh", "jwks_max_age",
})


def key_sources(settings: Settings, remote_kids: list[str] | None = None) -> str:
    """Kinds and key ids of what verifies tokens; never a secret."""
    parts = []
    if settings.jwt_secret is not None:
        parts.append("JWT_SECRET (HS256, development secret)"
                     if settings.jwt_secret == DEV_JWT_SECRET else "JWT_SECRET (HS256)")
    if settings.jwt_jwks:
        config = jwt_config(settings)
        kids = sorted(str(k.get("kid")) for k in (config.jwks or {}).get("keys", [])
                      if isinstance(k, dict))
        parts.append(f"JWT_JWKS (kids {', '.join(kids) or 'none'})")
    if settings.jwt_jwks_url:
        kids = ", ".join(remote_kids) if remote_kids else "none yet"
        parts.append(f"JWT_JWKS_URL {_without_credentials(settings.jwt_jwks_url)} (kids {kids}; "
                     f"refresh {settings.jwks_min_refresh:g}-{settings.jwks_max_age:g} s)")
    return "; ".join(parts) or "none"


def _without_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _shown(value: object) -> object:
    """A setting as its variable is written (TRUSTED_PROXIES: comma-separated CIDRs)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def summary(settings: Settings, remote_kids: list[str] | None = None) -> str:
    """The start-up line: mode, keys, workers, pool, statements, APP_URL, SMTP host
    and the limits that differ from their defaults."""
    smtp = "off"
    if settings.smtp_url:
        parts = urllib.parse.urlsplit(settings.smtp_url)
        smtp = f"{parts.hostname or '?'}:{parts.port}" if parts.port else (parts.hostname or "?")
    changed = {k: v for k, v in settings.changed().items() if k not in _NOT_LIMITS}
    limits = ", ".join(f"{k}={_shown(v)}" for k, v in sorted(changed.items())) or "defaults"
    return (f"joinery gateway pid {os.getpid()}: mode {settings.env}; keys: "
            f"{key_sources(settings, remote_kids)}; exp required: "
            f"{'yes' if settings.jwt_require_exp else 'no'}; workers "
            f"{os.environ.get('WORKERS') or '1'}; pool {settings.pool_min}-{settings.pool_max}; "
            f"prepared statements {'on' if settings.prepared_statements else 'off'}; "
            f"APP_URL {settings.app_url}; SMTP {smtp}; listening on "
            f"{settings.host}:{settings.port}; limits: {limits}")
