"""Brings a database to the current schema.

Versioned table changes are yoyo migrations in migrations/. Functions, triggers,
grants and policies live in sql/ and are rebuilt as one unit, in one
transaction, whenever their text changes: every function in the `api` and
`private` schemas is dropped with what depends on it (policies, triggers), and
sql/ is run again in file order. The hash of sql/ is kept as the comment of
schema `api`, so running the command twice changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = ROOT / "migrations"
SQL_DIR = ROOT / "sql"
CODE_LOCK = 7_311_402_221  # advisory lock key held while code is rebuilt
MARK = "joinery code "


def code_files() -> list[Path]:
    """sql/ files in the order they run: top-level, then functions, then policies."""
    files = sorted(SQL_DIR.glob("*.sql"))
    files += sorted((SQL_DIR / "functions").glob("*.sql"))
    files += sorted((SQL_DIR / "policies").glob("*.sql"))
    return files


def code_hash(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(SQL_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


DROP_CODE = """
do $drop$
declare
    r record;
begin
    for r in select p.polname, c.oid::regclass as tbl
             from pg_catalog.pg_policy p join pg_catalog.pg_class c on c.oid = p.polrelid
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace
             where n.nspname = 'app'
    loop
        execute format('drop policy %I on %s', r.polname, r.tbl);
    end loop;
    for r in select p.oid::regprocedure as fn, p.prokind
             from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
             where n.nspname in ('api', 'private')
    loop
        execute format('drop %s if exists %s cascade',
                       case r.prokind when 'p' then 'procedure' else 'function' end, r.fn);
    end loop;
end
$drop$;
"""


DOCBLOCK = re.compile(
    r"/\*\*(?P<doc>(?:(?!\*/).)*)\*/\s*create\s+(?:or\s+replace\s+)?function\s+(?P<name>api\.\w+)\s*\(",
    re.S | re.I,
)


def comment_functions(conn: psycopg.Connection, text: str) -> None:
    """The /** ... */ docblock over each api function becomes its COMMENT, so psql's
    \\df+ and the gateway's OpenAPI document show it."""
    for match in DOCBLOCK.finditer(text):
        doc = "\n".join(
            line.strip().removeprefix("*").strip() for line in match["doc"].strip().splitlines()
        ).strip()
        schema, name = match["name"].split(".")
        for (oid,) in conn.execute(
            "select p.oid::regprocedure::text from pg_proc p "
            "where p.pronamespace = %s::regnamespace and p.proname = %s", (schema, name)
        ).fetchall():
            conn.execute(sql.SQL("comment on function {} is {}").format(
                sql.SQL(oid), sql.Literal(doc)))


def apply_code(conn: psycopg.Connection, force: bool = False) -> bool:
    """Rebuilds sql/ in the database unless it is already current. True if rebuilt."""
    from .citus import CODE_VARIANT, is_coordinator, policy_text, restrict_reads

    files = code_files()
    citus = is_coordinator(conn)
    wanted = MARK + code_hash(files) + (f" {CODE_VARIANT}" if citus else "")
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (CODE_LOCK,))
        current = conn.execute(
            "select obj_description('api'::regnamespace, 'pg_namespace')"
        ).fetchone()
        if not force and current and current[0] == wanted:
            return False
        if citus:
            # Policies on shards and functions on workers change in one
            # distributed transaction: one connection per node.
            conn.execute("set local citus.multi_shard_modify_mode to 'sequential'")
        conn.execute(DROP_CODE)
        for path in files:
            text = path.read_text()
            if citus and path.parent.name == "policies":
                text = policy_text(text)
            conn.execute(text)  # type: ignore[arg-type]  # trusted files of the repo
            comment_functions(conn, text)
        conn.execute(
            "revoke execute on all functions in schema api, private from public"
        )
        if citus:
            restrict_reads(conn)
        conn.execute(sql.SQL("comment on schema api is {}").format(sql.Literal(wanted)))
        # Gateways reload their function catalogue (delivered at commit).
        conn.execute("notify joinery_schema")
    return True


def yoyo_url(database_url: str) -> str:
    """yoyo takes a URL and names its psycopg 3 backend postgresql+psycopg://.
    Accepts a URL or a key=value connection string."""
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    params = conninfo_to_dict(database_url)
    auth = quote(str(params.pop("user", "")), safe="")
    if "password" in params:
        auth += ":" + quote(str(params.pop("password")), safe="")
    host = str(params.pop("host", "localhost"))
    port = params.pop("port", None)
    dbname = quote(str(params.pop("dbname", "")), safe="")
    netloc = (auth + "@" if auth else "") + host + (f":{port}" if port else "")
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
    return f"postgresql+psycopg://{netloc}/{dbname}" + (f"?{query}" if query else "")


def apply_migrations(database_url: str) -> int:
    """Applies pending yoyo migrations; returns how many were applied."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(database_url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        # The post-apply hook (plain `yoyo apply`) is replaced here by apply_code.
        backend.apply_migrations_only(pending)
    return len(pending)


def set_authenticator_password(conn: psycopg.Connection, password: str) -> None:
    conn.execute(
        sql.SQL("alter role authenticator with login password {}").format(sql.Literal(password))
    )


def migrate(database_url: str, force_code: bool = False) -> str:
    """The whole of `make migrate`: tables, then code, then the gateway role's password."""
    from .citus import distribute

    applied = apply_migrations(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        rebuilt = apply_code(conn, force=force_code)
        password = os.environ.get("AUTHENTICATOR_PASSWORD")
        if password:
            set_authenticator_password(conn, password)
        distributed = distribute(conn)  # nothing off a Citus coordinator
    report = f"{applied} migration(s) applied; sql/ {'rebuilt' if rebuilt else 'unchanged'}"
    if distributed:
        report += "; citus: " + "; ".join(distributed)
    return report
