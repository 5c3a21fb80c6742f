"""Settings, read from the environment in one place, with development defaults."""

from __future__ import annotations

import contextvars
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TypeVar

from .client import Network, parse_networks

T = TypeVar("T")

# Development only (JOINERY_ENV=development): `make run` and the tests use it when
# JWT_SECRET is unset. Outside development mode the gateway refuses to start with it.
DEVELOPMENT = "development"
DEV_JWT_SECRET = "joinery-development-secret-change-me-0123456789"
DEV_DATABASE_URL = "postgresql://postgres@127.0.0.1:54329/joinery"
# Request headers copied into request.headers for SQL: the ones PostgREST users read.
# Anything else (and every credential, whatever the setting says) stays out, so a
# client cannot make each transaction carry kilobytes of its own choosing.
DEFAULT_SQL_HEADERS = ("accept,accept-language,content-type,host,origin,prefer,referer,"
                       "user-agent,x-client-info,x-forwarded-for,x-forwarded-host,"
                       "x-forwarded-proto,x-real-ip,x-request-id")
PRIVATE_HEADERS = frozenset({b"authorization", b"apikey", b"cookie"})


# Where variables are read from: the environment, or (Settings.defaults) nothing.
_ENVIRON: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "environ", default=os.environ)


def _env(name: str, default: str | None = None) -> str | None:
    value = _ENVIRON.get().get(name, "")
    return value if value != "" else default


def _parsed(name: str, default: T, parse: Callable[[str], T], what: str) -> T:
    """The variable `name` read by `parse`, or `default` when unset; a value that
    cannot be read is refused with the variable's name."""
    value = _env(name)
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError:
        raise ValueError(f"{name} must be {what}, not {value!r}") from None


def _int(name: str, default: int) -> int:
    return _parsed(name, default, int, "a whole number")


def _at_least_one(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def _days(name: str, default: int) -> int:
    """A number of days, at least 1 (0 would keep nothing)."""
    return _parsed(name, default, _at_least_one, "a whole number of days, at least 1")


def _float(name: str, default: float) -> float:
    return _parsed(name, default, float, "a number")


def _flag(name: str, default: bool) -> bool:
    value = (_env(name) or "").lower()
    if not value:
        return default
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{name} must be on or off, not {value!r}")


@dataclass(frozen=True)
class Settings:
    database_url: str
    listen_database_url: str
    jwt_secret: str | None
    jwt_jwks: str | None
    jwt_aud: str | None
    host: str
    port: int
    pool_min: int
    pool_max: int
    pool_timeout: float
    prepared_statements: bool
    statement_timeout_ms: int
    # How long a statement of a call waits for a lock before 55P03 (answered 503).
    lock_timeout_ms: int
    max_body_bytes: int
    sse_heartbeat: float
    sse_max_streams: int
    sse_max_topics: int
    realtime_per_user: int
    realtime_auth_concurrency: int
    realtime_max_sockets: int
    realtime_channels_per_socket: int
    realtime_max_frame_bytes: int
    realtime_idle_timeout: float
    realtime_max_pending_sockets: int
    realtime_join_timeout: float
    access_log: bool
    cors_origins: tuple[str, ...]
    smtp_url: str | None
    mail_from: str
    app_url: str
    mail_poll_seconds: float
    mail_retry_max: int
    mail_max_attempts: int
    invite_reminder_before: int
    audit_retention_days: int
    # Limits on what one client can hold or send (README, "Limits").
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int
    max_headers: int
    sql_headers: frozenset[bytes]
    sql_header_value_max: int
    db_probe_interval: float
    # Pages: where "Sign in" goes (redirect_to is added); the connection the
    # development sign-in creates users with (used only with DEV_JWT_SECRET).
    sign_in_url: str | None = None
    admin_database_url: str = DEV_DATABASE_URL
    # JOINERY_ENV: "development" or "production" (unset).
    env: str = "production"
    # Keys published at a URL (Supabase Auth's /auth/v1/.well-known/jwks.json):
    # fetched at start, kept per Cache-Control max-age within these bounds.
    jwt_jwks_url: str | None = None
    jwks_min_refresh: float = 30.0
    jwks_max_age: float = 3600.0
    jwt_require_exp: bool = True

    @property
    def development(self) -> bool:
        return self.env == DEVELOPMENT
    # `python -m gateway verify`: the statement and lock timeout of its one
    # read-only transaction (milliseconds).
    verify_statement_timeout_ms: int = 60000
    # /metrics: served only on METRICS_PORT (bound to METRICS_HOST) when that is
    # set; database-derived gauges read at most once per METRICS_DB_INTERVAL seconds.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_db_interval: float = 15.0
    # Proxies whose X-Forwarded-For / X-Real-IP name the client (gateway/client.py).
    trusted_proxies: tuple[Network, ...] = ()

    @property
    def dev_sign_in(self) -> bool:
        """The development sign-in exists only in development mode, and only while the
        development secret is in use."""
        return self.development and self.jwt_secret == DEV_JWT_SECRET

    @classmethod
    def defaults(cls) -> Settings:
        """The settings with no variable set (what the start-up line compares with)."""
        return contextvars.copy_context().run(_defaults)

    @classmethod
    def from_env(cls) -> Settings:
        env = (_env("JOINERY_ENV", "production") or "production").lower()
        if env not in (DEVELOPMENT, "production"):
            raise ValueError(f"JOINERY_ENV must be development or production, not {env!r}")
        jwks = _env("JWT_JWKS")
        jwks_url = _env("JWT_JWKS_URL")
        database_url = _env("GATEWAY_DATABASE_URL") or authenticator_url(
            _env("DATABASE_URL", DEV_DATABASE_URL) or DEV_DATABASE_URL)
        return cls(
            database_url=database_url,
            # LISTEN needs a session: behind PgBouncer in transaction mode, point this
            # at PostgreSQL itself (or a session-mode pool).
            listen_database_url=_env("LISTEN_DATABASE_URL", database_url) or database_url,
            # The development secret only in development mode, and not beside a JWKS.
            jwt_secret=_env("JWT_SECRET", None if jwks or jwks_url or env != DEVELOPMENT
                            else DEV_JWT_SECRET),
            jwt_jwks=jwks,
            jwt_aud=_env("JWT_AUD"),
            host=_env("HOST", "127.0.0.1") or "127.0.0.1",
            port=_int("PORT", 8000),
            pool_min=_int("POOL_MIN", 2),
            pool_max=_int("POOL_MAX", 20),
            pool_timeout=_float("POOL_TIMEOUT", 5),
            # Off by default: a pooler in transaction mode (PgBouncer before 1.21)
            # cannot carry a connection's prepared statements between transactions.
            prepared_statements=_flag("DB_PREPARED_STATEMENTS", False),
            statement_timeout_ms=_int("STATEMENT_TIMEOUT_MS", 8000),
            lock_timeout_ms=_int("LOCK_TIMEOUT_MS", 2000),
            max_body_bytes=_int("MAX_BODY_BYTES", 1024 * 1024),
            sse_heartbeat=_float("SSE_HEARTBEAT", 15),
            # Realtime limits, per gateway process (see the README's table).
            sse_max_streams=_int("SSE_MAX_STREAMS", 2000),
            sse_max_topics=_int("SSE_MAX_TOPICS", 20),
            realtime_per_user=_int("REALTIME_PER_USER", 50),
            realtime_auth_concurrency=_int("REALTIME_AUTH_CONCURRENCY", 4),
            realtime_max_sockets=_int("REALTIME_MAX_SOCKETS", 2000),
            realtime_channels_per_socket=_int("REALTIME_CHANNELS_PER_SOCKET", 100),
            realtime_max_frame_bytes=_int("REALTIME_MAX_FRAME_BYTES", 64 * 1024),
            realtime_idle_timeout=_float("REALTIME_IDLE_TIMEOUT", 60),
            # Sockets holding no channel yet (no token proven): their own small cap,
            # and how long they may stay so (README, Realtime).
            realtime_max_pending_sockets=_int("REALTIME_MAX_PENDING_SOCKETS", 64),
            realtime_join_timeout=_float("REALTIME_JOIN_TIMEOUT", 10),
            access_log=(_env("ACCESS_LOG", "on") or "on").lower() not in ("off", "false", "0"),
            # Browsers on other origins call the API, as they call PostgREST: any
            # origin by default (tokens travel in headers, never in cookies).
            cors_origins=tuple(o.strip() for o in (_env("CORS_ALLOWED_ORIGINS", "*") or "*")
                               .split(",") if o.strip()),
            smtp_url=_env("SMTP_URL"),
            mail_from=_env("MAIL_FROM", "Joinery <no-reply@localhost>") or "",
            app_url=_env("APP_URL", "http://127.0.0.1:8000") or "",
            mail_poll_seconds=_float("MAIL_POLL_SECONDS", 5),
            mail_retry_max=_int("MAIL_RETRY_MAX", 300),
            mail_max_attempts=_int("MAIL_MAX_ATTEMPTS", 8),
            invite_reminder_before=_int("INVITE_REMINDER_BEFORE", 86400),
            audit_retention_days=_days("AUDIT_RETENTION_DAYS", 365),
            header_timeout=_float("HEADER_TIMEOUT", 10),
            body_timeout=_float("BODY_TIMEOUT", 30),
            max_connections=_int("MAX_CONNECTIONS", 10000),
            max_header_bytes=_int("MAX_HEADER_BYTES", 16384),
            max_headers=_int("MAX_HEADERS", 100),
            sql_headers=frozenset(
                h.strip().lower().encode("latin-1")
                for h in (_env("SQL_HEADERS", DEFAULT_SQL_HEADERS) or "").split(",")
                if h.strip()) - PRIVATE_HEADERS,
            sql_header_value_max=_int("SQL_HEADER_VALUE_MAX", 512),
            db_probe_interval=_float("DB_PROBE_INTERVAL_MS", 250) / 1000,
            sign_in_url=_env("SIGN_IN_URL"),
            admin_database_url=_env("DATABASE_URL", DEV_DATABASE_URL) or DEV_DATABASE_URL,
            env=env,
            jwt_jwks_url=jwks_url,
            jwks_min_refresh=_float("JWKS_MIN_REFRESH", 30),
            jwks_max_age=_float("JWKS_MAX_AGE", 3600),
            jwt_require_exp=_flag("JWT_REQUIRE_EXP", True),
            verify_statement_timeout_ms=_int("VERIFY_STATEMENT_TIMEOUT_MS", 60000),
            metrics_port=_int("METRICS_PORT", 0) or None,
            metrics_host=_env("METRICS_HOST", "127.0.0.1") or "127.0.0.1",
            metrics_db_interval=_float("METRICS_DB_INTERVAL", 15),
            trusted_proxies=_parsed("TRUSTED_PROXIES", (), parse_networks,
                                    "comma-separated addresses or CIDRs"),
        )

    def changed(self) -> dict[str, object]:
        """Fields whose value differs from the default, by name."""
        default = Settings.defaults()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


def _defaults() -> Settings:
    _ENVIRON.set({})
    return Settings.from_env()


def is_loopback(host: str) -> bool:
    """HOST names this machine only (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def authenticator_url(database_url: str) -> str:
    """The same server and database as `database_url`, as the `authenticator` role
    (password from AUTHENTICATOR_PASSWORD when given)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(database_url)
    params["user"] = "authenticator"
    params.pop("password", None)
    password = _env("AUTHENTICATOR_PASSWORD")
    if password:
        params["password"] = password
    return make_conninfo(**params)
