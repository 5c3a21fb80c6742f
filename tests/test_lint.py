"""The SQL linter (gateway/tools/lint.py): the migrated schema passes every check, and
every check fails, naming the object, on a database given one offender per rule."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import ROOT
from gateway.tools.lint import CHECKS, Problem, lint_url, unwrapped_calls
from gateway.tools.migrate import migrate

# One offender per rule, each drawing that rule's finding and no other; beside
# them, look-alikes that every check must let pass.
OFFENDERS = """
-- definer_search_path (not executable by PUBLIC, so nothing else applies)
create function private.lint_no_path() returns integer
    language sql security definer as 'select 1';
revoke execute on function private.lint_no_path() from public;
create function private.lint_other_path() returns integer
    language sql security definer set search_path = pg_catalog, public as 'select 1';
revoke execute on function private.lint_other_path() from public;

-- function_search_path_mutable: a helper that is not a definer, with no path or
-- another path than ''. One with the empty path is fine.
create function private.lint_invoker_no_path() returns integer language sql as 'select 1';
revoke execute on function private.lint_invoker_no_path() from public;
create function private.lint_invoker_public_path() returns integer
    language plpgsql set search_path = public as 'begin return 1; end';
revoke execute on function private.lint_invoker_public_path() from public;
create function private.lint_invoker_fixed() returns integer
    language sql set search_path = '' as 'select 1';
revoke execute on function private.lint_invoker_fixed() from public;

-- rls_disabled: readable by anon in app, readable by authenticated elsewhere,
-- unreadable but in app; a table of a schema Supabase manages is not ours.
create table app.lint_open (id integer primary key);
grant select on app.lint_open to anon;
create schema lint_elsewhere;
create table lint_elsewhere.exposed (id integer primary key);
grant select (id) on lint_elsewhere.exposed to authenticated;
create table lint_elsewhere.unexposed (id integer primary key);
create table app.lint_unprotected (id integer primary key);
create schema extensions;
create table extensions.managed (id integer primary key);
grant select on extensions.managed to anon;

-- function_executable: PUBLIC keeps EXECUTE on a new function; a definer granted
-- to anon. An invoker function granted to anon alone is fine.
create function api.lint_public() returns integer
    language sql set search_path = '' as 'select 1';
create function private.lint_anon_definer() returns integer
    language sql security definer set search_path = '' as 'select 1';
revoke execute on function private.lint_anon_definer() from public;
grant execute on function private.lint_anon_definer() to anon;
create function api.lint_anon_invoker() returns integer
    language sql set search_path = '' as 'select 1';
revoke execute on function api.lint_anon_invoker() from public;
grant execute on function api.lint_anon_invoker() to anon;

-- auth_rls_initplan: a bare auth.uid(); the wrapped form on another action is fine.
create table app.lint_initplan (id integer primary key, owner_id uuid);
alter table app.lint_initplan enable row level security;
create policy lint_bare_uid on app.lint_initplan for select to authenticated
    using (owner_id = auth.uid());
create policy lint_wrapped_uid on app.lint_initplan for delete to authenticated
    using (owner_id = (select auth.uid()));

-- unindexed_foreign_key: no index; an index on another column first; a partial
-- index whose predicate the lookups do not imply. Covered: a two-column index in
-- the other order, a partial index on `is not null`, and a unique index on a
-- part of the key (c of (c, d)), which finds at most one row.
create table app.lint_parent (a integer, b integer, primary key (a, b));
alter table app.lint_parent enable row level security;
create policy lint_parent_read on app.lint_parent for select to authenticated using (true);
create table app.lint_child (
    id integer primary key,
    profile_id uuid constraint lint_child_profile_fkey references app.profiles (id),
    other_id uuid constraint lint_child_other_fkey references app.profiles (id),
    partial_id uuid constraint lint_child_partial_fkey references app.profiles (id),
    nullable_id uuid constraint lint_child_nullable_fkey references app.profiles (id),
    a integer, b integer, flag boolean,
    constraint lint_child_pair_fkey foreign key (a, b) references app.lint_parent (a, b),
    c integer unique, d integer,
    constraint lint_child_unique_part_fkey foreign key (c, d) references app.lint_parent (a, b)
);
create index lint_child_id_other_idx on app.lint_child (id, other_id);
create index lint_child_partial_idx on app.lint_child (partial_id) where flag;
create index lint_child_nullable_idx on app.lint_child (nullable_id)
    where nullable_id is not null;
create index lint_child_b_a_idx on app.lint_child (b, a, id);
alter table app.lint_child enable row level security;
create policy lint_child_read on app.lint_child for select to authenticated using (true);

-- multiple_permissive_policies: two permissive selects for authenticated. A
-- restrictive policy beside a permissive one, or one per role, is fine.
create table app.lint_two (id integer primary key);
alter table app.lint_two enable row level security;
create policy lint_first on app.lint_two for select to authenticated using (id > 0);
create policy lint_second on app.lint_two for select to authenticated using (id < 100);
create table app.lint_restricted (id integer primary key);
alter table app.lint_restricted enable row level security;
create policy lint_allow on app.lint_restricted for select to authenticated using (id > 0);
create policy lint_narrow on app.lint_restricted as restrictive for select to authenticated
    using (id < 100);
create policy lint_anon_too on app.lint_restricted for select to anon using (id > 0);

-- rls_enabled_no_policy: granted to authenticated, so its rows are hidden for
-- nothing; the same table granted to nobody is fine (internal, RLS as defence).
create table app.lint_no_policy (id integer primary key);
alter table app.lint_no_policy enable row level security;
grant select on app.lint_no_policy to authenticated;
create table app.lint_internal (id integer primary key);
alter table app.lint_internal enable row level security;

-- policy_without_rls (in private and granted to nobody: rls_disabled stays quiet)
create table private.lint_policy_off (id integer primary key);
create policy lint_ignored on private.lint_policy_off for select to authenticated using (true);

-- duplicate_index: the copy (second by name) is reported, and a unique index like
-- the primary key's (the constraint's index is kept). Partial, unique or
-- descending indexes beside a plain one, or a plain one beside a unique one, are
-- not copies.
create table app.lint_dup (id integer primary key, a integer);
alter table app.lint_dup enable row level security;
create policy lint_dup_read on app.lint_dup for select to authenticated using (true);
create index lint_dup_a_idx on app.lint_dup (a);
create index lint_dup_a_idx1 on app.lint_dup (a);
create unique index lint_dup_id_key on app.lint_dup (id);
create index lint_dup_id_idx on app.lint_dup (id);
create index lint_dup_a_partial_idx on app.lint_dup (a) where a > 0;
create unique index lint_dup_a_unique_idx on app.lint_dup (a);
create index lint_dup_a_desc_idx on app.lint_dup (a desc);

-- no_primary_key
create table app.lint_no_pk (a integer);
alter table app.lint_no_pk enable row level security;
create policy lint_no_pk_read on app.lint_no_pk for select to authenticated using (true);

-- policy_always_true_for_writes (a sentence-style name, quoted in the finding)
create table app.lint_writes (id integer primary key);
alter table app.lint_writes enable row level security;
create policy "Anyone can insert" on app.lint_writes for insert to authenticated
    with check (true);

-- error_convention: PT403 as a code, a 'detail' key. 42501 with `details`, and
-- the word detail in a comment, are fine.
create function private.lint_pt403() returns jsonb language plpgsql set search_path = ''
    as $f$begin raise exception using errcode = 'PT403', message = 'no'; end$f$;
revoke execute on function private.lint_pt403() from public;
create function private.lint_detail_key() returns jsonb language plpgsql set search_path = ''
    as $f$begin return pg_catalog.jsonb_build_object('code', '42501', 'detail', 'x'); end$f$;
revoke execute on function private.lint_detail_key() from public;
create function private.lint_convention_kept() returns jsonb language plpgsql
    set search_path = ''
    as $f$begin
        -- the 'detail' of a raise is answered as details
        return pg_catalog.jsonb_build_object('code', '42501', 'details', 'x');
    end$f$;
revoke execute on function private.lint_convention_kept() from public;

-- refusal_after_write: an answered refusal after an insert; the same refusal
-- before the insert, or a raise after it, is fine.
create function api.lint_refuse_late() returns jsonb language plpgsql set search_path = ''
    as $f$begin
        insert into app.lint_writes (id) values (1);
        return private.refuse('lint', 409, 'late', 'Too late.');
    end$f$;
revoke execute on function api.lint_refuse_late() from public;
create function api.lint_refuse_first() returns jsonb language plpgsql set search_path = ''
    as $f$begin
        if random() < 0.5 then
            return private.refuse('lint', 409, 'early', 'Early.');
        end if;
        -- a comment may say: return private.fail(...) after insert into app.x
        insert into app.lint_writes (id) values (1);
        raise exception using errcode = 'PT409', message = 'Raised: undone.';
    end$f$;
revoke execute on function api.lint_refuse_first() from public;
"""

EXPECTED = {
    ("definer_search_path", "private.lint_no_path()"),
    ("definer_search_path", "private.lint_other_path()"),
    ("function_search_path_mutable", "private.lint_invoker_no_path()"),
    ("function_search_path_mutable", "private.lint_invoker_public_path()"),
    ("rls_disabled", "app.lint_open"),
    ("rls_disabled", "lint_elsewhere.exposed"),
    ("rls_disabled", "app.lint_unprotected"),
    ("function_executable", "api.lint_public()"),
    ("function_executable", "private.lint_anon_definer()"),
    ("auth_rls_initplan", "app.lint_initplan.lint_bare_uid"),
    ("unindexed_foreign_key", "app.lint_child.lint_child_profile_fkey"),
    ("unindexed_foreign_key", "app.lint_child.lint_child_other_fkey"),
    ("unindexed_foreign_key", "app.lint_child.lint_child_partial_fkey"),
    ("multiple_permissive_policies", "app.lint_two"),
    ("rls_enabled_no_policy", "app.lint_no_policy"),
    ("policy_without_rls", "private.lint_policy_off.lint_ignored"),
    ("duplicate_index", "app.lint_dup_a_idx1"),
    ("duplicate_index", "app.lint_dup_id_key"),
    ("no_primary_key", "app.lint_no_pk"),
    ("policy_always_true_for_writes", 'app.lint_writes."Anyone can insert"'),
    ("error_convention", "private.lint_pt403()"),
    ("error_convention", "private.lint_detail_key()"),
    ("refusal_after_write", "api.lint_refuse_late()"),
}


@pytest.fixture(scope="module")
def offended(database_url: str) -> Iterator[tuple[str, list[Problem]]]:
    """A new database on the same server, migrated, given OFFENDERS, and linted;
    dropped afterwards."""
    name = f"joinery_lint_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(database_url)
    params["dbname"] = name
    url = make_conninfo(**params)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(OFFENDERS)
        yield url, lint_url(url)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def lint_cli(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.tools.lint"], cwd=ROOT,
                          env={**os.environ, "DATABASE_URL": url},
                          capture_output=True, text=True, timeout=60)


def test_migrated_schema_passes_every_check(database_url: str) -> None:
    assert [str(p) for p in lint_url(database_url)] == []


def test_cli_is_quiet_and_succeeds_on_the_schema(database_url: str) -> None:
    done = lint_cli(database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"sql lint: {len(CHECKS)} checks passed on ")
    assert len(done.stdout.splitlines()) == 1


@pytest.mark.parametrize("rule", [fn.__name__ for fn in CHECKS])
def test_each_check_fails_naming_the_object(
        rule: str, offended: tuple[str, list[Problem]]) -> None:
    _, problems = offended
    found = {p.object for p in problems if p.rule == rule}
    assert found == {obj for r, obj in EXPECTED if r == rule}, [str(p) for p in problems]


def test_offenders_draw_exactly_the_expected_findings(
        offended: tuple[str, list[Problem]]) -> None:
    _, problems = offended
    assert {rule for rule, _ in EXPECTED} == {fn.__name__ for fn in CHECKS}  # each can fail
    assert {(p.rule, p.object) for p in problems} == EXPECTED
    assert len(problems) == len(EXPECTED)  # one line per offending object


def test_findings_say_why(offended: tuple[str, list[Problem]]) -> None:
    details = {(p.rule, p.object): p.detail for p in offended[1]}
    assert details[("definer_search_path", "private.lint_other_path()")] == (
        'search_path=pg_catalog, public (needs search_path="")')
    assert details[("definer_search_path", "private.lint_no_path()")] == (
        'search_path is not set (needs search_path="")')
    assert details[("function_search_path_mutable", "private.lint_invoker_no_path()")] == (
        'search_path is not set (needs search_path="")')
    assert details[("function_search_path_mutable",
                    "private.lint_invoker_public_path()")] == (
        'search_path=public (needs search_path="")')
    assert details[("rls_disabled", "app.lint_open")] == (
        "row level security is off and anon can read it")
    assert details[("rls_disabled", "app.lint_unprotected")] == (
        "row level security is off (every table in app needs it)")
    assert details[("function_executable", "api.lint_public()")] == "executable by PUBLIC"
    assert details[("function_executable", "private.lint_anon_definer()")] == (
        "SECURITY DEFINER and executable by anon")
    assert details[("auth_rls_initplan", "app.lint_initplan.lint_bare_uid")] == (
        "USING calls auth.uid() outside (select ...)")
    assert details[("multiple_permissive_policies", "app.lint_two")] == (
        "permissive policies lint_first, lint_second overlap for role authenticated on SELECT")
    assert details[("duplicate_index", "app.lint_dup_a_idx1")] == (
        "same definition as app.lint_dup_a_idx")
    assert details[("duplicate_index", "app.lint_dup_id_key")] == (
        "same definition as app.lint_dup_pkey")
    assert details[("error_convention", "private.lint_pt403()")] == (
        "writes the code PT403 (use 42501)")
    assert details[("error_convention", "private.lint_detail_key()")] == (
        "writes a 'detail' key (use details)")
    assert details[("refusal_after_write", "api.lint_refuse_late()")] == (
        "answers a refusal (private.refuse) after a write (insert into app.)")


def test_cli_prints_one_line_per_problem_and_fails(
        offended: tuple[str, list[Problem]]) -> None:
    url, problems = offended
    done = lint_cli(url)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [str(p) for p in problems]
    assert done.stderr.strip() == f"sql lint: {len(problems)} problem(s)"


# Policy expressions as PostgreSQL prints them (pg_policies.qual), with the calls
# that run once per row.
@pytest.mark.parametrize(("expr", "calls"), [
    ("(user_id = ( SELECT auth.uid() AS uid))", []),
    ("((( SELECT auth.uid() AS uid) = user_low) OR (( SELECT auth.uid() AS uid) = user_high))",
     []),
    ("(( SELECT (auth.jwt() ->> 'role'::text)) = 'admin'::text)", []),
    ("(user_id = auth.uid())", ["auth.uid()"]),
    ("((auth.role() = 'authenticated'::text) AND (email = ( SELECT auth.email() AS email)))",
     ["auth.role()"]),
    ("(tenant = (current_setting('app.tenant'::text, true))::uuid)", ["current_setting()"]),
    ("(EXISTS ( SELECT 1 FROM app.group_members m WHERE (m.user_id = auth.uid())))",
     ["auth.uid()"]),
    ("(note = 'auth.uid()'::text)", []),
    ("private.is_group_member(group_id)", []),
])
def test_unwrapped_calls(expr: str, calls: list[str]) -> None:
    assert unwrapped_calls(expr) == calls


def test_the_gateway_keeps_the_error_convention() -> None:
    """The gateway's own errors follow the convention error_convention checks in SQL
    (docs/http.md, "Errors"): no PT403 (a refusal of privilege is 42501) and no
    `detail` key beside PostgREST's code, message, details, hint (the linter, which
    names them, aside)."""
    found = [f"{path.relative_to(ROOT)}:{n}"
             for path in sorted((ROOT / "gateway").rglob("*"))
             if path.suffix in (".py", ".js") and path.is_file()
             and path != ROOT / "gateway" / "tools" / "lint.py"  # the rule itself
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if "PT403" in line or re.search(r"""["']detail["']\s*:""", line)]
    assert found == []
