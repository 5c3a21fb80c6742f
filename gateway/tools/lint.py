"""SQL lints: our own equivalents of Supabase's database-linter rules that apply here.

    python -m gateway.tools.lint      lints DATABASE_URL; exit 1 with one line per problem

Each check is a query over the catalogs returning one row per offending object,
named as `\\d` would name it: `app.t`, `api.f(uuid)`, `app.t.constraint`,
`app.t."Policy name"`. The project's objects live in schemas `app`, `api` and
`private`; `auth` and the other schemas Supabase manages are theirs, not ours.
The session runs with an empty search_path, so every name the catalogs print
comes schema-qualified (`auth.uid()`, never `uid()`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

PROJECT_SCHEMAS = ["app", "api", "private"]
# Schemas that Supabase (or an extension) owns: left to their owners.
MANAGED_SCHEMAS = [
    "auth", "extensions", "graphql", "graphql_public", "realtime", "storage", "vault",
    "net", "cron", "pgbouncer", "pgsodium", "pgsodium_masks", "pgtle",
    "supabase_functions", "supabase_migrations", "information_schema",
]
# SECURITY DEFINER functions anon may run, each for a reason: stopping
# invitation mail works from a link in the mail, for people who have no account.
# Its argument is a 256-bit token, looked up by hash.
ANON_DEFINERS = ["api.stop_invitations(text)"]
PARAMS = {"project": PROJECT_SCHEMAS, "managed": MANAGED_SCHEMAS,
          "anon_definers": ANON_DEFINERS}

# Reused inside queries: the object is not part of an extension.
NOT_IN_EXTENSION = """not exists (select from pg_depend d
    where d.classid = '{catalog}'::regclass and d.objid = {oid} and d.deptype = 'e')"""
TABLE_NOT_IN_EXTENSION = NOT_IN_EXTENSION.format(catalog="pg_class", oid="c.oid")
FUNCTION_NOT_IN_EXTENSION = NOT_IN_EXTENSION.format(catalog="pg_proc", oid="p.oid")


@dataclass(frozen=True, order=True)
class Problem:
    rule: str
    object: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.object}: {self.detail}"


# A check returns (object, detail) pairs; its function's name is the rule's.
Check = Callable[[psycopg.Connection], list[tuple[str, str]]]
CHECKS: list[Check] = []


def check(fn: Check) -> Check:
    CHECKS.append(fn)
    return fn


def rows(conn: psycopg.Connection, query: str) -> list[tuple[str, str]]:
    return conn.execute(query, PARAMS).fetchall()


@check
def definer_search_path(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A SECURITY DEFINER function without `set search_path = ''`.

    A definer function runs with its owner's rights; with the caller's search_path,
    a caller who can create objects in a schema on that path (or set the path)
    substitutes their own `=` operator, table or function and runs it as the owner.
    An empty path forces every name in the body to be qualified.
    """
    return rows(conn, f"""
        select p.oid::regprocedure::text,
               coalesce((select string_agg(c, ', ') from unnest(p.proconfig) c
                         where c like 'search_path=%%'),
                        'search_path is not set') || ' (needs search_path="")'
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any(%(project)s) and p.prosecdef and {FUNCTION_NOT_IN_EXTENSION}
          and 'search_path=""' <> all (coalesce(p.proconfig, '{{}}'))
        order by 1""")


@check
def function_search_path_mutable(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A function that is not a definer and has no `set search_path = ''`.

    With definer_search_path this is Supabase's rule 0011 over our schemas, a
    little stricter: it asks for the empty path, which satisfies every version of
    that rule. Without a fixed path a function resolves its names through its
    caller's path, so the same body reaches other objects for another role or
    session; Supabase's Security Advisor reports each one. A SET clause keeps a
    SQL function from being inlined, so small helpers are plpgsql, whose plans
    are cached (bench/README.md has the measured cost).
    """
    return rows(conn, f"""
        select p.oid::regprocedure::text,
               coalesce((select string_agg(c, ', ') from unnest(p.proconfig) c
                         where c like 'search_path=%%'),
                        'search_path is not set') || ' (needs search_path="")'
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any(%(project)s) and not p.prosecdef and {FUNCTION_NOT_IN_EXTENSION}
          and 'search_path=""' <> all (coalesce(p.proconfig, '{{}}'))
        order by 1""")


@check
def rls_disabled(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A table without row level security that anon or authenticated can read, in
    any schema that is not the system's or Supabase's; and any table of `app`
    without RLS, readable or not.

    Without RLS a grant is the whole story: every row goes to every holder of the
    role, and a later grant of USAGE on the schema exposes it at once. Tables in
    `app` hold user data, so RLS is on from the start, before any grant.
    """
    return rows(conn, f"""
        select c.oid::regclass::text,
               case when readers is not null
                    then 'row level security is off and ' || readers || ' can read it'
                    else 'row level security is off (every table in app needs it)' end
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        cross join lateral (
            select string_agg(r.rolname, ' and ' order by r.rolname) as readers
            from pg_roles r
            where r.rolname in ('anon', 'authenticated')
              and has_any_column_privilege(r.oid, c.oid, 'SELECT')) g
        where c.relkind in ('r', 'p') and not c.relrowsecurity
          and n.nspname not like 'pg\\_%%' and n.nspname <> all (%(managed)s)
          and {TABLE_NOT_IN_EXTENSION}
          and (n.nspname = 'app' or readers is not null)
        order by 1""")


@check
def function_executable(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A function of our schemas that PUBLIC can execute, or a SECURITY DEFINER
    function that anon can execute (but those listed in ANON_DEFINERS).

    PostgreSQL grants EXECUTE to PUBLIC on every new function (a null proacl means
    exactly that), so anything not revoked is callable by every role, anon
    included. A definer function runs with its owner's rights and past RLS: anon,
    which anyone holding the public key becomes, must not reach one.
    """
    return rows(conn, f"""
        select p.oid::regprocedure::text,
               concat_ws(' and ',
                   case when by_public then 'executable by PUBLIC' end,
                   case when p.prosecdef and by_anon
                        then 'SECURITY DEFINER and executable by anon' end)
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        cross join lateral (
            select p.proacl is null
                   or exists (select from aclexplode(p.proacl) a
                              where a.grantee = 0 and a.privilege_type = 'EXECUTE') as by_public,
                   exists (select from pg_roles r where r.rolname = 'anon'
                           and has_function_privilege(r.oid, p.oid, 'EXECUTE'))
                   and p.oid::regprocedure::text <> all (%(anon_definers)s) as by_anon) x
        where n.nspname = any(%(project)s) and {FUNCTION_NOT_IN_EXTENSION}
          and (by_public or (p.prosecdef and by_anon))
        order by 1""")


CALL = re.compile(
    r"\b(?:auth\.(?:uid|jwt|role|email)|(?:pg_catalog\.)?current_setting)\s*\(", re.IGNORECASE)
SUBSELECT = re.compile(r"\(\s*select\b", re.IGNORECASE)
CLAUSE = re.compile(r"\b(?:from|where)\b", re.IGNORECASE)
QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


def unwrapped_calls(expr: str) -> list[str]:
    """The calls to auth.uid(), auth.jwt(), auth.role(), auth.email() and
    current_setting() in a deparsed policy expression that do not sit in the
    select list of a sub-select, as `(select auth.uid())` or
    `(select auth.jwt() ->> 'role')` do."""
    text = QUOTED.sub(lambda m: m[0][0] + " " * (len(m[0]) - 2) + m[0][-1], expr)
    calls = {m.start(): m for m in CALL.finditer(text)}
    found: list[str] = []
    opened: list[tuple[int, bool]] = []  # each open parenthesis: where, opens a sub-select
    for i, ch in enumerate(text):
        if i in calls:
            selects = [pos for pos, is_select in opened if is_select]
            if not selects or CLAUSE.search(text, selects[-1], i):
                found.append(re.sub(r"\s*\($", "()", calls[i][0]))
        if ch == "(":
            opened.append((i, SUBSELECT.match(text, i) is not None))
        elif ch == ")" and opened:
            opened.pop()
    return found


@check
def auth_rls_initplan(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A policy calling auth.uid(), auth.jwt(), auth.role(), auth.email() or
    current_setting() outside a `(select ...)`.

    A bare call is evaluated again for every row the policy filters; wrapped as
    `(select auth.uid())` it becomes an InitPlan, evaluated once per statement.
    Like Supabase's rule this reads the deparsed expression; a call counts as
    wrapped only in the select list of a sub-select, since in its WHERE clause
    (an `exists (...)`, say) it still runs per row.
    """
    found: list[tuple[str, str]] = []
    for obj, clause, expr in conn.execute("""
            select format('%%s.%%I', c.oid::regclass, p.polname), x.clause, x.expr
            from pg_policy p join pg_class c on c.oid = p.polrelid
            join pg_namespace n on n.oid = c.relnamespace
            cross join lateral (values ('USING', pg_get_expr(p.polqual, p.polrelid)),
                                       ('WITH CHECK', pg_get_expr(p.polwithcheck, p.polrelid)))
                 x(clause, expr)
            where n.nspname = any(%(project)s)
              and x.expr ~* '(auth\\.(uid|jwt|role|email)|current_setting)\\s*\\('
            order by 1, 2 desc""", PARAMS):
        calls = unwrapped_calls(expr)
        if calls:
            found.append((obj, f"{clause} calls {', '.join(calls)} outside (select ...)"))
    return found


@check
def unindexed_foreign_key(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A foreign key whose columns do not lead any index of its table.

    Deleting or updating a referenced row makes PostgreSQL look up the referencing
    rows: without an index whose first n columns are the key's n columns (in any
    order), that is a sequential scan of the referencing table for every row
    deleted or re-keyed, while the referenced row stays locked. A partial index
    counts only when its predicate is `col is not null` on key columns, which
    every such lookup implies. A unique index whose columns are all key columns
    counts too: the lookup finds at most one row through it (a chat's
    (like_group_id, event_id) key, served by the unique like_group_id).
    """
    return rows(conn, """
        select format('%%s.%%I', c.oid::regclass, k.conname),
               format('foreign key (%%s) has no index leading with its columns',
                      (select string_agg(quote_ident(a.attname), ', ' order by u.ord)
                       from unnest(k.conkey) with ordinality u(attnum, ord)
                       join pg_attribute a on a.attrelid = k.conrelid and a.attnum = u.attnum))
        from pg_constraint k join pg_class c on c.oid = k.conrelid
        join pg_namespace n on n.oid = c.relnamespace
        where k.contype = 'f' and n.nspname = any(%(project)s)
          and not exists (
            select from pg_index i
            where i.indrelid = k.conrelid and i.indisvalid
              and ((i.indnkeyatts >= cardinality(k.conkey)
                    and (select array_agg(x order by x)
                         from unnest((string_to_array(i.indkey::text, ' ')::int2[])
                                     [1:cardinality(k.conkey)]) x)
                        = (select array_agg(x order by x) from unnest(k.conkey) x))
                   or (i.indisunique and i.indexprs is null
                       and (string_to_array(i.indkey::text, ' ')::int2[])[1:i.indnkeyatts]
                           <@ k.conkey::int2[]))
              and (i.indpred is null or (
                select bool_and(t in (select quote_ident(a.attname) || ' IS NOT NULL'
                                      from pg_attribute a
                                      where a.attrelid = k.conrelid
                                        and a.attnum = any(k.conkey)))
                from regexp_split_to_table(pg_get_expr(i.indpred, i.indrelid), ' AND ') s,
                     btrim(s, '() ') t)))
        order by 1""")


@check
def multiple_permissive_policies(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Two or more permissive policies of one table for the same role and action.

    Permissive policies are OR-ed: every one of them is evaluated for every row,
    and the rule a reader has to hold in mind is spread over several places. One
    policy per role and action, with its conditions combined, says it once. Roles
    that bypass RLS are left out; a policy `to public` applies to every other role.
    """
    return rows(conn, """
        with applies as (
            select p.polrelid, p.polname, r.rolname, act
            from pg_policy p
            join pg_class c on c.oid = p.polrelid
            join pg_namespace n on n.oid = c.relnamespace
            join pg_roles r on (r.oid = any(p.polroles) or 0::oid = any(p.polroles))
                           and not r.rolbypassrls and not r.rolsuper
                           and r.rolname !~ '^pg_'
            cross join lateral unnest(case p.polcmd when '*'
                                      then array['SELECT', 'INSERT', 'UPDATE', 'DELETE']
                                      else array[case p.polcmd when 'r' then 'SELECT'
                                                 when 'a' then 'INSERT' when 'w' then 'UPDATE'
                                                 when 'd' then 'DELETE' end] end) act
            where p.polpermissive and n.nspname = any(%(project)s)
        ), crowded as (
            select polrelid, rolname, act,
                   string_agg(quote_ident(polname), ', ' order by polname) as policies
            from applies group by polrelid, rolname, act having count(*) > 1
        )
        select polrelid::regclass::text,
               format('permissive policies %%s overlap for role %%s on %%s', policies,
                      string_agg(distinct rolname, ', '), string_agg(distinct act, ', '))
        from crowded group by polrelid, policies
        order by 1, 2""")


@check
def rls_enabled_no_policy(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A table with row level security on, no policy at all, and a privilege held
    by anon or authenticated.

    Every row is then hidden from those roles whatever the grants say: either the
    grants are dead or a policy is missing. (A table that only the api functions
    and service_role touch, granted to neither, needs no policy: RLS there is
    defence in depth, and a policy would only say `true` to a role that bypasses
    it anyway.)
    """
    return rows(conn, f"""
        select c.oid::regclass::text,
               'row level security is on, anon or authenticated hold a privilege, '
               'and the table has no policy'
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and c.relrowsecurity and n.nspname = any(%(project)s)
          and {TABLE_NOT_IN_EXTENSION}
          and not exists (select from pg_policy p where p.polrelid = c.oid)
          and exists (
              select from pg_catalog.aclexplode(c.relacl) a
              join pg_catalog.pg_roles r on r.oid = a.grantee
              where r.rolname in ('anon', 'authenticated'))
        order by 1""")


@check
def policy_without_rls(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A policy on a table whose row level security is off.

    The policy is not applied at all: a reader of the schema believes the rows
    are filtered, while every grantee reads all of them.
    """
    return rows(conn, """
        select format('%%s.%%I', c.oid::regclass, p.polname),
               'policy on a table whose row level security is off'
        from pg_policy p join pg_class c on c.oid = p.polrelid
        join pg_namespace n on n.oid = c.relnamespace
        where not c.relrowsecurity and n.nspname = any(%(project)s)
        order by 1""")


@check
def duplicate_index(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """An index identical to another of the same table: same access method, key and
    included columns, expressions, operator classes, collations, sort options,
    predicate and uniqueness.

    It serves no query the other does not, and every write pays for both. The one
    backing a constraint (else the first by name) is kept; the others are named.
    """
    return rows(conn, """
        with indexes as (
            select i.indexrelid, i.indrelid, ic.relname,
                   exists (select from pg_constraint k where k.conindid = i.indexrelid) as backs,
                   concat_ws('|', ic.relam, i.indkey, i.indnkeyatts, i.indclass, i.indcollation,
                             i.indoption, i.indisunique, i.indnullsnotdistinct, i.indisexclusion,
                             pg_get_expr(i.indexprs, i.indrelid),
                             pg_get_expr(i.indpred, i.indrelid)) as shape
            from pg_index i join pg_class ic on ic.oid = i.indexrelid
            join pg_namespace n on n.oid = ic.relnamespace
            where n.nspname = any(%(project)s)
        ), ranked as (
            select *, first_value(indexrelid) over w as kept, row_number() over w as n
            from indexes
            window w as (partition by indrelid, shape order by backs desc, relname)
        )
        select indexrelid::regclass::text, format('same definition as %%s', kept::regclass)
        from ranked where n > 1
        order by 1""")


@check
def no_primary_key(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A table without a primary key.

    Without one a row cannot be named reliably: updates and deletes by key,
    logical replication of updates and deletes, and distribution all need it.
    """
    return rows(conn, f"""
        select c.oid::regclass::text, 'table has no primary key'
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and n.nspname = any(%(project)s)
          and {TABLE_NOT_IN_EXTENSION}
          and not exists (select from pg_constraint k where k.conrelid = c.oid and k.contype = 'p')
        order by 1""")


@check
def policy_always_true_for_writes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A permissive INSERT, UPDATE, DELETE or ALL policy whose USING or WITH CHECK
    is `true`.

    It lets its roles write any row: row level security in name only. Reading
    everything (`for select using (true)`) can be intended and is not flagged;
    writes in this project go through the api functions. A restrictive policy
    that is always true opens nothing and is not flagged either.
    """
    return rows(conn, """
        select format('%%s.%%I', c.oid::regclass, p.polname),
               format('%%s policy with %%s (true)',
                      case p.polcmd when 'a' then 'INSERT' when 'w' then 'UPDATE'
                                    when 'd' then 'DELETE' else 'ALL' end,
                      concat_ws(' and ',
                                case when pg_get_expr(p.polqual, p.polrelid) = 'true'
                                     then 'USING' end,
                                case when pg_get_expr(p.polwithcheck, p.polrelid) = 'true'
                                     then 'WITH CHECK' end))
        from pg_policy p join pg_class c on c.oid = p.polrelid
        join pg_namespace n on n.oid = c.relnamespace
        where p.polcmd in ('a', 'w', 'd', '*') and p.polpermissive
          and n.nspname = any(%(project)s)
          and 'true' in (pg_get_expr(p.polqual, p.polrelid),
                         pg_get_expr(p.polwithcheck, p.polrelid))
        order by 1""")


# Migrations after this one run on installs with data: what they add to an
# existing table must not lock it for a scan (migration_problems).
ONLINE_SINCE = "0042"
_SQL_NOISE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.S)
_CREATE_TABLE = re.compile(
    r"\bcreate\s+(?:unlogged\s+)?table\s+(?:if\s+not\s+exists\s+)?([\w.\"]+)", re.I)
_ADD_CONSTRAINT = re.compile(
    r"\balter\s+table\s+(?:only\s+)?(?:if\s+exists\s+)?([\w.\"]+)\s+add\s+constraint\s+(\w+)\s+"
    r"(foreign\s+key|check)\b(.*?)(?:;|\$\$|\bend\s+if\b)", re.I | re.S)
_VALIDATE = re.compile(r"\bvalidate\s+constraint\s+(\w+)", re.I)
_CREATE_INDEX = re.compile(
    r"\bcreate\s+(?:unique\s+)?index\s+(concurrently\s+)?(?:if\s+not\s+exists\s+)?"
    r"(?:\w+\s+)?on\s+(?:only\s+)?([\w.\"]+)", re.I)
_NOT_TRANSACTIONAL = re.compile(r"^\s*--\s*transactional\s*:\s*false\s*$", re.I | re.M)


def migration_problems(name: str, text: str, header: str | None = None) -> list[Problem]:
    """The rules for a migration numbered after ONLINE_SINCE, on its text: on a
    table it does not create, a FOREIGN KEY or CHECK is added NOT VALID and
    validated by a later statement (VALIDATE CONSTRAINT: SHARE UPDATE EXCLUSIVE,
    writes go on, where ADD checking every row holds SHARE ROW EXCLUSIVE or
    ACCESS EXCLUSIVE for the whole scan), and an index is built CONCURRENTLY,
    which needs `-- transactional: false` (yoyo otherwise runs the file in one
    transaction, where PostgreSQL refuses CONCURRENTLY). A rollback file is held
    to the index rule only (what it adds back was there before); yoyo runs it as
    its migration says, so `header` is the migration's text."""
    number = name.split("_", 1)[0]
    if not number.isdigit() or number <= ONLINE_SINCE:
        return []
    rollback = name.endswith(".rollback")
    code = _SQL_NOISE.sub(" ", text)
    created = {m[1].lower() for m in _CREATE_TABLE.finditer(code)}
    problems: list[Problem] = []
    if not rollback:
        for match in _ADD_CONSTRAINT.finditer(code):
            table, constraint, kind, rest = match[1].lower(), match[2], match[3], match[4]
            if table in created:
                continue
            kind = " ".join(kind.upper().split())
            if not re.search(r"\bnot\s+valid\b", rest, re.I):
                problems.append(Problem("migration_constraint_not_valid", f"{name}: {table}",
                                        f"{kind} {constraint} on an existing table: add it NOT "
                                        "VALID, then VALIDATE CONSTRAINT in a later statement"))
            elif not any(v[1] == constraint and v.start() > match.end()
                         for v in _VALIDATE.finditer(code)):
                problems.append(Problem("migration_constraint_not_valid", f"{name}: {table}",
                                        f"{kind} {constraint} is added NOT VALID and never "
                                        "validated (VALIDATE CONSTRAINT after it)"))
    for match in _CREATE_INDEX.finditer(code):
        table = match[2].lower()
        if table in created:
            continue
        if not match[1]:
            problems.append(Problem("migration_index_concurrently", f"{name}: {table}",
                                    "index on an existing table: CREATE INDEX CONCURRENTLY "
                                    "(with -- transactional: false)"))
    if (re.search(r"\bconcurrently\b", code, re.I)
            and not _NOT_TRANSACTIONAL.search(header if header is not None else text)):
        problems.append(Problem("migration_index_concurrently", name,
                                "CONCURRENTLY needs `-- transactional: false` in the header"
                                + (" of the migration" if rollback else "")))
    return problems


def lint_migrations(directory: str | None = None) -> list[Problem]:
    """migration_problems for every file of migrations/."""
    from pathlib import Path

    folder = Path(directory) if directory else Path(__file__).resolve().parents[2] / "migrations"
    problems: list[Problem] = []
    for path in sorted(folder.glob("[0-9]*.sql")):
        name = path.name.removesuffix(".sql")
        applied = folder / (name.removesuffix(".rollback") + ".sql")
        header = applied.read_text() if name.endswith(".rollback") and applied.exists() else None
        problems.extend(migration_problems(name, path.read_text(), header))
    return problems


def project_functions(conn: psycopg.Connection, schemas: list[str]) -> list[tuple[str, str]]:
    """(name, body without its -- comments) of every plpgsql or SQL function of ours
    in `schemas`."""
    found = conn.execute(f"""
        select p.oid::regprocedure::text, p.prosrc
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any(%(schemas)s) and {FUNCTION_NOT_IN_EXTENSION}
          and p.prolang in (select l.oid from pg_language l where l.lanname in ('plpgsql', 'sql'))
        order by 1""", {"schemas": schemas}).fetchall()
    return [(name, re.sub(r"--[^\n]*", "", src)) for name, src in found]


# The error convention (docs/http.md, "Errors"): a refusal of privilege is 42501,
# never PT403; the body's keys are PostgREST's code, message, details, hint.
FORBIDDEN_CODE = re.compile(r"'PT403'")
DETAIL_KEY = re.compile(r"'detail'", re.IGNORECASE)


@check
def error_convention(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """A function that writes the code PT403 or a `'detail'` key.

    One convention for every error, raised or answered (docs/http.md, "Errors"):
    a refusal of privilege carries SQLSTATE 42501, which PostgREST (and the
    gateway) answer 403, or 401 to anon; PTxyz only where no SQLSTATE says it
    (404, 409, 410, 429, ...). The body is PostgREST's {code, message, details,
    hint}: the reason goes to `details` (`detail = ...` in RAISE, which PostgREST
    answers as `details`; private.fail's `details` argument). A `'detail'` key
    would be a fifth key no client reads.
    """
    found = []
    for name, src in project_functions(conn, PROJECT_SCHEMAS):
        why = [text for pattern, text in ((FORBIDDEN_CODE, "writes the code PT403 (use 42501)"),
                                          (DETAIL_KEY, "writes a 'detail' key (use details)"))
               if pattern.search(src)]
        if why:
            found.append((name, "; ".join(why)))
    return found


# A write to a table of app, as a statement (not a comment: those are stripped).
APP_WRITE = re.compile(r"\b(insert\s+into|update|delete\s+from)\s+app\.", re.IGNORECASE)
# An answered refusal: it sets response.status and returns, and the transaction
# commits (private.rate_limited answers the 429 the same way).
ANSWERED_REFUSAL = re.compile(r"\bprivate\.(refuse|fail|rate_limited)\s*\(", re.IGNORECASE)


@check
def refusal_after_write(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """An api function whose text answers a refusal (private.refuse, private.fail,
    private.rate_limited) after a write to a table of app.

    An answered refusal commits: that is its point (the rate-limit hit and the
    audit entry stay). A write made before it would commit too, half a change
    the caller is told did not happen. So every check comes before the first
    write, and a refusal after a write is raised (which undoes everything). The
    rule is textual, on the body without comments: the first `insert into app.`,
    `update app.` or `delete from app.` must follow the last answered refusal.
    The helpers' own writes (private.audit, private.rate_limit) are calls, not
    statements of the body, and do not count. A loop could still bring a
    refusal after a write; none does, and the rule keeps the text honest.
    """
    found = []
    for name, src in project_functions(conn, ["api"]):
        write = APP_WRITE.search(src)
        refusals = [m for m in ANSWERED_REFUSAL.finditer(src)]
        if write and refusals and refusals[-1].start() > write.start():
            found.append((name, f"answers a refusal ({refusals[-1].group(0).rstrip('( ')}) "
                                f"after a write ({' '.join(write.group(0).split())})"))
    return found


def lint(conn: psycopg.Connection) -> list[Problem]:
    """Every check, in one read-only transaction with an empty search_path."""
    problems: list[Problem] = []
    with conn.transaction(force_rollback=True):
        conn.execute("set transaction read only")
        conn.execute("select set_config('search_path', '', true)")
        for fn in CHECKS:
            problems.extend(Problem(fn.__name__, obj, detail) for obj, detail in fn(conn))
    return problems


def lint_url(database_url: str) -> list[Problem]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return lint(conn)


def summary(conn: psycopg.Connection) -> str:
    row: Any = conn.execute("""
        select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where c.relkind in ('r', 'p') and n.nspname = any(%(project)s)),
               (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                where n.nspname = any(%(project)s)),
               (select count(*) from pg_policy p join pg_class c on c.oid = p.polrelid
                join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = any(%(project)s))""", PARAMS).fetchone()
    return (f"sql lint: {len(CHECKS)} checks passed on {row[0]} tables, {row[1]} functions "
            f"and {row[2]} policies")


def main() -> int:
    from ..settings import DEV_DATABASE_URL

    database_url = os.environ.get("DATABASE_URL") or DEV_DATABASE_URL
    with psycopg.connect(database_url, autocommit=True) as conn:
        problems = lint_migrations() + lint(conn)
        if not problems:
            print(summary(conn))
            return 0
    for problem in problems:
        print(problem)
    print(f"sql lint: {len(problems)} problem(s)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
