"""`python -m gateway check-config`: what `serve` checks, and what it would only
find out later, without serving.

- the settings can be read, and `serve` would start with them (keys);
- the database answers on GATEWAY_DATABASE_URL;
- the gateway's role may `set role` to anon, authenticated and service_role;
- the schema is at head: every yoyo migration in migrations/ applied, and the
  code in sql/ the one `migrate` would install (realtime.send's presence
  included: private.publish is made with or without its call);
- JWT_JWKS_URL, when set, gives at least one usable key.

Each problem is one line; the exit status is 1 when there is any."""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..jwks import FetchError, fetch
from ..settings import Settings
from ..startup import start_problem
from .migrate import (
    MARK,
    MIGRATIONS_DIR,
    REALTIME_VARIANT,
    SQL_DIR,
    code_files,
    code_hash,
    has_realtime_send,
)

API_ROLES = ("anon", "authenticated", "service_role")
CONNECT_TIMEOUT = 5
# yoyo's table of applied migrations, found by name wherever it lives (public, as
# yoyo makes it, or a schema of its own): another schema first.
YOYO_MIGRATION_TABLE = "_yoyo_migration"
FIND_YOYO = """
select format('%%I.%%I', n.nspname, c.relname)
from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relname = %s and c.relkind in ('r', 'p')
order by n.nspname = 'public', n.nspname
limit 1
"""


def migration_ids() -> list[str]:
    """The yoyo migrations of this checkout, by id (file name without .sql)."""
    return sorted(p.name.removesuffix(".sql") for p in MIGRATIONS_DIR.glob("*.sql")
                  if not p.name.endswith(".rollback.sql"))


def schema_problems(conn: psycopg.Connection) -> list[str]:
    """Migrations not applied, and sql/ not the code installed."""
    problems = []
    row = conn.execute(FIND_YOYO, (YOYO_MIGRATION_TABLE,)).fetchone()
    if row is None:
        return ["migrations: none applied (no yoyo table): run `make migrate`"]
    try:
        with conn.transaction():
            applied = {r[0] for r in conn.execute(
                sql.SQL("select migration_id from {}").format(sql.SQL(row[0]))).fetchall()}
    except psycopg.errors.InsufficientPrivilege:
        user = conn.info.user
        return [f"migrations: {user} may not read {row[0]}: give DATABASE_URL (the "
                "migrating connection) to check them"]
    missing = [m for m in migration_ids() if m not in applied]
    if missing:
        problems.append(f"migrations: {len(missing)} not applied ({', '.join(missing)}): "
                        "run `make migrate`")
    comment = conn.execute(
        "select obj_description(to_regnamespace('api'), 'pg_namespace')").fetchone()
    installed = comment[0] if comment and comment[0] else ""
    if not installed.startswith(MARK + code_hash(code_files())):
        problems.append(f"migrations: the functions in the database are not those of "
                        f"{SQL_DIR.name}/: run `make migrate`")
    elif (REALTIME_VARIANT in installed.split()) != has_realtime_send(conn):
        problems.append("migrations: realtime.send was installed or removed since sql/ was "
                        "rebuilt (private.publish calls it only when it was there then): "
                        "run `make migrate`")
    return problems


def role_problems(conn: psycopg.Connection) -> list[str]:
    problems = []
    for role in API_ROLES:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        except psycopg.Error as exc:
            reason = exc.diag.message_primary or type(exc).__name__
            problems.append(f"grants: {conn.info.user} cannot `set role {role}` ({reason}): "
                            f"grant {role} to {conn.info.user}")
    return problems


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)


def _reason(exc: psycopg.Error) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def database_problems(settings: Settings, admin_url: str | None) -> list[str]:
    try:
        conn = _connect(settings.database_url)
    except psycopg.Error as exc:
        return [f"database: cannot connect with GATEWAY_DATABASE_URL: {_reason(exc)}"]
    with conn:
        problems = role_problems(conn)
        if admin_url is None:
            return problems + schema_problems(conn)
    try:
        admin = _connect(admin_url)
    except psycopg.Error as exc:
        return [*problems, f"database: cannot connect with DATABASE_URL: {_reason(exc)}"]
    with admin:
        return problems + schema_problems(admin)


def jwks_problems(settings: Settings) -> list[str]:
    if not settings.jwt_jwks_url:
        return []
    try:
        keys, _ = fetch(settings.jwt_jwks_url)
    except FetchError as exc:
        return [f"JWT_JWKS_URL: {exc}"]
    return [] if keys.keys else ["JWT_JWKS_URL: no usable key"]


def check(admin_url: str | None) -> list[str]:
    """Every problem found, one line each (empty: all is well)."""
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        return [f"settings: {exc}"]
    problems = []
    if (problem := start_problem(settings)) is not None:
        problems.append(f"keys: {problem}")
    problems += jwks_problems(settings)
    problems += database_problems(settings, admin_url)
    return problems
