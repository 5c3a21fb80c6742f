"""Brings a database to the current schema.

Versioned table changes are yoyo migrations in migrations/. Functions, triggers,
grants and policies live in sql/ and are rebuilt as one unit, in one
transaction, whenever their text changes. The hash of sql/ is kept as the
comment of schema `api`, so running the command twice changes nothing.

The rebuild is online: it takes no lock that waits for the traffic's.

- Every statement runs on its own. `create function` runs as `create or
  replace`: same object, grants kept, nothing dropped, no table locked. Only a
  function whose return type or argument names changed is dropped first
  (PostgreSQL's own HINT names it), without CASCADE.
- A policy or a trigger is recreated only when its statement changed: the hash
  of each is kept in the comment of schema `private` (a policy change takes the
  table's ACCESS EXCLUSIVE lock; an unchanged one takes nothing).
- Functions of `api` and `private` that sql/ no longer defines are dropped,
  without CASCADE; when something outside sql/ depends on one (an operator's
  policy calling `private.is_group_member`, say) the rebuild refuses, naming the
  dependents (from pg_depend), and changes nothing.
- `lock_timeout` (MIGRATE_LOCK_TIMEOUT, default 2s) bounds every lock wait, so
  the rebuild never sits in a lock queue with requests queued behind it; the
  whole rebuild is tried MIGRATE_LOCK_RETRIES times (default 5), then it gives
  up with a message naming the lock, having changed nothing.

yoyo keeps its own tables in schema joinery_migrations (YOYO_SCHEMA), out of
`public`, which Supabase's REST API exposes: the URL yoyo gets names it
(`?schema=`), and migration 0016, run first, moves an older install's tables
there. A password for `authenticator` (AUTHENTICATOR_PASSWORD) is checked to be
settable before anything changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = ROOT / "migrations"
SQL_DIR = ROOT / "sql"
CODE_LOCK = 7_311_402_221  # advisory lock key held while code is rebuilt
MARK = "joinery code "
OBJECTS_MARK = "joinery objects "  # comment of schema private: {object key: statement hash}
YOYO_SCHEMA = "joinery_migrations"
# Part of the code mark where realtime.send exists (has_realtime_send).
REALTIME_VARIANT = "realtime-send"
# yoyo runs `set search_path to <schema>` and keeps its tables in the first schema
# of that path that exists: joinery_migrations, once made; public on a database
# never migrated (migration 0016 then moves them).
YOYO_SEARCH_PATH = f"{YOYO_SCHEMA},public"
YOYO_SCHEMA_MIGRATION = MIGRATIONS_DIR / "0016_migrations_schema.sql"


class RebuildRefused(RuntimeError):
    """The rebuild stopped and changed nothing; the message says why (also: a
    password for authenticator that this role may not set)."""


class _LockWait(Exception):
    """A statement of sql/ (named in the message) waited past lock_timeout."""


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


_TOKEN = re.compile(r"""--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|"(?:[^"]|"")*"|\$(\w*)\$|;""", re.S)


def statements(text: str) -> Iterator[str]:
    """The statements of a SQL file, split at top-level semicolons (outside
    strings, quoted names, comments and dollar quotes). Comments before a
    statement stay with it (the docblocks)."""
    start = pos = 0
    while True:
        match = _TOKEN.search(text, pos)
        if match is None:
            break
        token = match.group(0)
        if match.group(1) is not None:  # a dollar quote: skip to its end
            close = text.find(token, match.end())
            pos = len(text) if close < 0 else close + len(token)
            continue
        pos = match.end()
        if token == ";":
            statement = text[start:pos].strip()
            if _code(statement):
                yield statement
            start = pos
    rest = text[start:].strip()
    if _code(rest):
        yield rest


def _code(statement: str) -> bool:
    """True when the text holds more than comments."""
    return bool(re.sub(r"--[^\n]*|/\*.*?\*/|;", "", statement, flags=re.S).strip())


def _body(statement: str) -> str:
    """The statement without the comments before it."""
    return re.sub(r"^(\s*(--[^\n]*|/\*.*?\*/))*\s*", "", statement, flags=re.S)


_CREATE_FUNCTION = re.compile(r"create\s+function\s", re.I)
_POLICY = re.compile(r'create\s+policy\s+("(?:[^"]|"")*"|\w+)\s+on\s+([\w."]+)', re.I)
_TRIGGER = re.compile(r'create\s+trigger\s+("(?:[^"]|"")*"|\w+)\s.*?\son\s+([\w."]+)', re.I | re.S)
_DROP_HINT = re.compile(r"Use DROP FUNCTION (.+) first\.")


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


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


def _setting(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def lock_timeout() -> str:
    """MIGRATE_LOCK_TIMEOUT: a PostgreSQL duration ('2s', '500ms'); default 2s."""
    return _setting("MIGRATE_LOCK_TIMEOUT", "2s")


def lock_retries() -> int:
    """MIGRATE_LOCK_RETRIES: how many times the rebuild is tried; default 5."""
    value = _setting("MIGRATE_LOCK_RETRIES", "5")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"MIGRATE_LOCK_RETRIES must be a whole number >= 1, not {value!r}")
    return int(value)


_DEPENDENTS = """
select pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
       case d.classid when 'pg_catalog.pg_policy'::regclass then 'policy'
                      when 'pg_catalog.pg_trigger'::regclass then 'trigger' end,
       coalesce(pol.polrelid, trg.tgrelid)::regclass::text,
       coalesce(pol.polname, trg.tgname)
from pg_catalog.pg_depend d
left join pg_catalog.pg_policy pol
  on d.classid = 'pg_catalog.pg_policy'::regclass and pol.oid = d.objid
left join pg_catalog.pg_trigger trg
  on d.classid = 'pg_catalog.pg_trigger'::regclass and trg.oid = d.objid
where d.refclassid = 'pg_catalog.pg_proc'::regclass
  and d.refobjid = %s::regprocedure and d.deptype = 'n'
order by 1
"""


def _refuse(function: str, why: str, dependents: list[str]) -> RebuildRefused:
    return RebuildRefused(
        f"sql/ rebuild refused, nothing changed: {function} {why}, and these depend on "
        f"it: {'; '.join(dependents)}. Drop or change them first (the rebuild never "
        "drops with CASCADE).")


class _Rebuild:
    """One run of sql/ inside the caller's transaction."""

    def __init__(self, conn: psycopg.Connection, citus: bool) -> None:
        from .citus import policy_text

        self.conn = conn
        self.citus = citus
        self.policy_text = policy_text
        row = conn.execute(
            "select obj_description('private'::regnamespace, 'pg_namespace')").fetchone()
        stored = row[0] if row and row[0] else ""
        self.old: dict[str, str] = (
            json.loads(stored[len(OBJECTS_MARK):]) if stored.startswith(OBJECTS_MARK) else {})
        self.new: dict[str, str] = {}
        self.changed: list[str] = []
        # Every function of api and private with its row version: one that the run
        # leaves with the same version was not made again by sql/, so it is stale.
        self.before = self.versions()

    def versions(self) -> dict[int, str]:
        return dict(self.conn.execute(
            "select p.oid::int8, p.xmin::text from pg_catalog.pg_proc p "
            "where p.pronamespace in ('api'::regnamespace, 'private'::regnamespace)"
        ).fetchall())

    def run_file(self, path: Path) -> None:
        text = path.read_text()
        if self.citus and path.parent.name == "policies":
            text = self.policy_text(text)
        for statement in statements(text):
            try:
                self.run(statement)
            except psycopg.errors.LockNotAvailable as exc:
                first = _body(statement).splitlines()[0]
                raise _LockWait(f"{path.relative_to(SQL_DIR)}: {first}") from exc
        comment_functions(self.conn, text)

    def run(self, statement: str) -> None:
        body = _body(statement)
        if _CREATE_FUNCTION.match(body):
            self.create_function("create or replace function " + body[_CREATE_FUNCTION.match(
                body).end():])
            return
        for kind, pattern in (("policy", _POLICY), ("trigger", _TRIGGER)):
            match = pattern.match(body)
            if match:
                self.create_once(kind, _unquote(match[1]), match[2], body)
                return
        self.conn.execute(statement)  # type: ignore[arg-type]  # trusted files of the repo

    def create_function(self, statement: str) -> None:
        """create or replace; when PostgreSQL refuses to replace (a changed return
        type or argument name), the old one is dropped (no CASCADE) and made again."""
        for _ in range(3):
            try:
                with self.conn.transaction():
                    self.conn.execute(statement)  # type: ignore[arg-type]
                return
            except psycopg.errors.InvalidFunctionDefinition as exc:
                hint = _DROP_HINT.search(exc.diag.message_hint or "")
                if hint is None:
                    raise
                self.drop_function(hint[1], "changed its signature", ours_too=True)
        raise RuntimeError(f"could not replace a function: {statement[:80]}")

    def drop_function(self, function: str, why: str, ours_too: bool) -> None:
        """Drops `function` without CASCADE. What depends on it must be sql/'s own
        policies or triggers (ours_too: dropped here and made again later in this
        run, their files coming after the functions'); anything else is named in
        RebuildRefused."""
        rows = self.conn.execute(_DEPENDENTS, (function,)).fetchall()
        foreign = [r[0] for r in rows
                   if not (ours_too and r[1] and f"{r[1]} {r[2]} {r[3]}" in self.old)]
        if foreign:
            raise _refuse(function, why, foreign)
        for _, kind, table, name in rows:
            self.drop(kind, name, table)
            self.old.pop(f"{kind} {table} {name}", None)
        self.conn.execute(sql.SQL("drop function {}").format(sql.SQL(function)))

    def create_once(self, kind: str, name: str, table: str, statement: str) -> None:
        """A policy or trigger: made again only when its statement changed (or it is
        missing); its hash is recorded either way."""
        key = f"{kind} {table} {name}"
        digest = hashlib.sha256(statement.encode()).hexdigest()[:16]
        self.new[key] = digest
        if self.old.get(key) == digest and self.exists(kind, name, table):
            return
        self.drop(kind, name, table)
        self.conn.execute(statement)  # type: ignore[arg-type]
        self.changed.append(key)

    def exists(self, kind: str, name: str, table: str) -> bool:
        if kind == "policy":
            query = ("select 1 from pg_catalog.pg_policy where polrelid = %s::regclass "
                     "and polname = %s")
        else:
            query = ("select 1 from pg_catalog.pg_trigger where tgrelid = %s::regclass "
                     "and tgname = %s and not tgisinternal")
        return self.conn.execute(query, (table, name)).fetchone() is not None

    def drop(self, kind: str, name: str, table: str) -> None:
        if self.exists(kind, name, table):
            self.conn.execute(sql.SQL("drop {} {} on {}").format(
                sql.SQL(kind), sql.Identifier(name), sql.SQL(table)))

    def finish(self) -> None:
        """Drops the policies and triggers sql/ made before and no longer makes (and,
        once, those of a database rebuilt the old way: every policy on `app`),
        then the functions it no longer defines; records the hashes."""
        gone = [key for key in self.old if key not in self.new]
        if not self.old:  # first online rebuild: the old way dropped them all each time
            gone = [f"policy {t} {n}" for n, t in self.conn.execute(
                "select p.polname, c.oid::regclass::text from pg_catalog.pg_policy p "
                "join pg_catalog.pg_class c on c.oid = p.polrelid "
                "where c.relnamespace = 'app'::regnamespace").fetchall()
                if f"policy {t} {n}" not in self.new]
        for key in gone:
            kind, rest = key.split(" ", 1)
            table, name = rest.split(" ", 1)
            if self.conn.execute("select pg_catalog.to_regclass(%s)", (table,)).fetchone() != (
                    None,):
                self.drop(kind, name, table)
        now = self.versions()
        stale = [oid for oid, version in self.before.items() if now.get(oid) == version]
        for oid in stale:
            (function,) = self.conn.execute(
                "select %s::oid::regprocedure::text", (oid,)).fetchone() or ("",)
            self.drop_function(function, "is no longer defined in sql/", ours_too=False)
        self.conn.execute(sql.SQL("comment on schema private is {}").format(
            sql.Literal(OBJECTS_MARK + json.dumps(self.new, sort_keys=True))))


def has_realtime_send(conn: psycopg.Connection) -> bool:
    """Supabase Realtime's realtime.send is there. sql/functions/45_realtime.sql
    makes private.publish with a static call of it, or without, as it finds it;
    the code mark records which, so that a database where it appears (Realtime
    installed after migrate) or goes is rebuilt by the next migrate."""
    row = conn.execute(
        "select pg_catalog.to_regprocedure('realtime.send(jsonb, text, text, boolean)') "
        "is not null").fetchone()
    return bool(row and row[0])


def _apply_once(conn: psycopg.Connection, force: bool, timeout: str) -> bool:
    from .citus import CODE_VARIANT, is_coordinator, restrict_reads

    files = code_files()
    citus = is_coordinator(conn)
    wanted = MARK + code_hash(files) + (f" {CODE_VARIANT}" if citus else "") + (
        f" {REALTIME_VARIANT}" if has_realtime_send(conn) else "")
    with conn.transaction():
        # Another migrate's rebuild is waited for, whatever it takes; every lock
        # after this one is bounded.
        conn.execute("select pg_advisory_xact_lock(%s)", (CODE_LOCK,))
        conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(timeout)))
        current = conn.execute(
            "select obj_description('api'::regnamespace, 'pg_namespace')"
        ).fetchone()
        if not force and current and current[0] == wanted:
            return False
        if citus:
            # Policies on shards and functions on workers change in one
            # distributed transaction: one connection per node.
            conn.execute("set local citus.multi_shard_modify_mode to 'sequential'")
        rebuild = _Rebuild(conn, citus)
        for path in files:
            rebuild.run_file(path)
        rebuild.finish()
        conn.execute(
            "revoke execute on all functions in schema api, private from public"
        )
        if citus:
            restrict_reads(conn)
        conn.execute(sql.SQL("comment on schema api is {}").format(sql.Literal(wanted)))
        # Gateways reload their function catalogue (delivered at commit).
        conn.execute("notify joinery_schema")
    return True


def apply_code(conn: psycopg.Connection, force: bool = False) -> bool:
    """Rebuilds sql/ in the database unless it is already current. True if rebuilt.
    A lock wait past MIGRATE_LOCK_TIMEOUT rolls the attempt back; after
    MIGRATE_LOCK_RETRIES attempts RebuildRefused says which lock it could not get."""
    timeout, tries = lock_timeout(), lock_retries()
    for attempt in range(1, tries + 1):
        try:
            return _apply_once(conn, force, timeout)
        except (psycopg.errors.LockNotAvailable, _LockWait) as exc:
            if attempt == tries:
                where = f" at {exc}" if isinstance(exc, _LockWait) else ""
                raise RebuildRefused(
                    f"sql/ rebuild gave up, nothing changed: a lock was not granted within "
                    f"{timeout} (MIGRATE_LOCK_TIMEOUT), {tries} times "
                    f"(MIGRATE_LOCK_RETRIES){where}. A long transaction holds it (see "
                    "pg_stat_activity); run migrate again once it ends.") from None
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
    raise AssertionError("unreachable")


def yoyo_url(database_url: str) -> str:
    """yoyo takes a URL and names its psycopg 3 backend postgresql+psycopg://; its
    `schema` parameter says where yoyo keeps its tables (YOYO_SEARCH_PATH).
    Accepts a URL or a key=value connection string."""
    from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

    from psycopg.conninfo import conninfo_to_dict

    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            parts = urlsplit("postgresql+psycopg://" + database_url[len(prefix):])
            query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                     if k != "schema"] + [("schema", YOYO_SEARCH_PATH)]
            return urlunsplit(parts._replace(query=urlencode(query, safe=",")))
    params = conninfo_to_dict(database_url)
    auth = quote(str(params.pop("user", "")), safe="")
    if "password" in params:
        auth += ":" + quote(str(params.pop("password")), safe="")
    host = str(params.pop("host", "localhost"))
    port = params.pop("port", None)
    dbname = quote(str(params.pop("dbname", "")), safe="")
    netloc = (auth + "@" if auth else "") + host + (f":{port}" if port else "")
    params["schema"] = YOYO_SEARCH_PATH
    query = "&".join(f"{k}={quote(str(v), safe=',')}" for k, v in params.items())
    return f"postgresql+psycopg://{netloc}/{dbname}?{query}"


def prepare_yoyo_schema(conn: psycopg.Connection) -> None:
    """Migration 0016 itself, before yoyo starts: schema joinery_migrations exists
    and holds yoyo's tables (moved from `public` on an install made before it), so
    yoyo finds them there. Idempotent, as the migration is."""
    with conn.transaction():
        # Two migrates at once: one makes the schema and moves, the other then finds it done.
        conn.execute("select pg_advisory_xact_lock(%s)", (CODE_LOCK + 1,))
        conn.execute(sql.SQL("set local search_path to {}").format(sql.SQL(YOYO_SEARCH_PATH)))
        conn.execute(YOYO_SCHEMA_MIGRATION.read_text())  # type: ignore[arg-type]  # repo file


# The migration that adds app.groups.member_count (kept by the functions of
# sql/, which the rebuild after it installs).
RECOUNT_AFTER = "0045_lists"


def apply_migrations(database_url: str) -> list[str]:
    """Applies pending yoyo migrations; returns the ids of those applied."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(database_url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        # The post-apply hook (plain `yoyo apply`) is replaced here by apply_code.
        backend.apply_migrations_only(pending)
    return [m.id for m in pending]


def set_authenticator_password(conn: psycopg.Connection, password: str) -> None:
    conn.execute(
        sql.SQL("alter role authenticator with login password {}").format(sql.Literal(password))
    )


PASSWORD_ADVICE = (
    "Nothing was changed. Set the password another way and run `make migrate` without "
    "AUTHENTICATOR_PASSWORD: as a superuser, `alter role authenticator with login password "
    "'...'`; on Supabase, where authenticator is reserved, give the gateway a login role of "
    "its own instead (README, \"Deploy onto Supabase\")."
)


def check_authenticator_password(conn: psycopg.Connection) -> None:
    """Before anything changes: can this connection set authenticator's password?
    A superuser can. Otherwise the statement itself is tried with a placeholder
    password, in a transaction rolled back, so every rule the server applies is
    asked (privileges, and extensions such as Supabase's supautils, which reserves
    the role). Where the role does not exist yet, migration 0001 will create it:
    that needs CREATEROLE, and whoever creates a role may then alter it."""
    row = conn.execute(
        "select exists (select from pg_catalog.pg_roles where rolname = 'authenticator'), "
        "r.rolsuper, r.rolsuper or r.rolcreaterole from pg_catalog.pg_roles r "
        "where r.rolname = current_user").fetchone()
    assert row is not None
    exists, superuser, may_create = row
    if superuser:
        return  # a superuser may alter any role (and nothing is tried on a cluster's nodes)
    if not exists:
        if may_create:
            return
        reason = "role authenticator does not exist and this role may not create roles"
    else:
        try:
            with conn.transaction(force_rollback=True):
                set_authenticator_password(conn, "joinery-probe-never-kept")
            return
        except psycopg.Error as exc:
            reason = (exc.diag.message_primary or str(exc)).strip()
    user = conn.execute("select current_user").fetchone()
    raise RebuildRefused(
        f"AUTHENTICATOR_PASSWORD is set, but {user[0] if user else 'this role'} may not "
        f"set the password of role authenticator ({reason}). {PASSWORD_ADVICE}")


def migrate(database_url: str, force_code: bool = False) -> str:
    """The whole of `make migrate`: checks, yoyo's schema, tables, then code, then
    the gateway role's password."""
    from .citus import distribute

    password = os.environ.get("AUTHENTICATOR_PASSWORD")
    with psycopg.connect(database_url, autocommit=True) as conn:
        if password:
            check_authenticator_password(conn)
        prepare_yoyo_schema(conn)
    applied = apply_migrations(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        rebuilt = apply_code(conn, force=force_code)
        if RECOUNT_AFTER in applied:
            # Joins and leaves between 0045's backfill and this rebuild ran the
            # old functions, which do not keep member_count: count once more.
            conn.execute("select private.recount_group_members()")
        # The audit log's monthly partitions, three months ahead (prune keeps
        # them so too): entries never land in its default partition.
        conn.execute("select private.audit_add_partitions(3)")
        if password:
            set_authenticator_password(conn, password)
        distributed = distribute(conn)  # nothing off a Citus coordinator
    report = f"{len(applied)} migration(s) applied; sql/ {'rebuilt' if rebuilt else 'unchanged'}"
    if distributed:
        report += "; citus: " + "; ".join(distributed)
    return report
