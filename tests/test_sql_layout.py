"""sql/ by sub-domain: no file over 450 lines, and the catalogue it builds is the
one recorded in tests/data/catalogue.txt (functions of app, api and private with
their definitions, comments and grants; every policy).

The snapshot was written from the tree before sql/ was split by sub-domain and
left unchanged by the split, so the split moved text only. A database built
from the sql/ of before the split and rebuilt from the current sql/ reaches the
same catalogue, keeping every function it had (skipped without git history). It is a golden file:
a change to a function, a docblock, a grant or a policy made on purpose changes
it, and it is written again from the current sql/ with

    scripts/devdb run bash -c \
      '.venv/bin/python -m gateway migrate && .venv/bin/python tests/test_sql_layout.py'

and the diff is read with the change."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from test_migrations import migrate, scratch_url  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tests" / "data" / "catalogue.txt"
MAX_LINES = 450
# The last commit with sql/ in files by domain (the snapshot's commit).
BEFORE_SPLIT = "01f58883a6fa45ecae9f11e86e49a0785036a13a"
# Functions whose arguments changed since the split, on purpose (old -> new
# signature): the rebuild creates the new one and drops the old (issue 19,
# item 11: the lists' max_rows and after).
CHANGED_SINCE_SPLIT = {
    "api.event_like_groups(uuid)": "api.event_like_groups(uuid,integer,uuid,uuid)",
    "api.group_members(uuid)": "api.group_members(uuid,integer,uuid)",
    "api.list_friends()": "api.list_friends(integer,uuid)",
    "api.list_group_invites(uuid)": "api.list_group_invites(uuid,integer,uuid)",
    "api.my_chats()": "api.my_chats(integer,uuid)",
    "api.my_groups()": "api.my_groups(integer,uuid)",
    "api.my_like_groups()": "api.my_like_groups(integer,uuid)",
    "api.my_notifications(boolean)": "api.my_notifications(boolean,integer,uuid)",
    "api.my_pair_invites()": "api.my_pair_invites(integer,uuid,uuid)",
    # issue 19, item 16: refuse answers `details` apart from the audited reason,
    # and writes the audit entry's own details (join_group's 410).
    "private.refuse(text,integer,text,text,uuid,text)":
        "private.refuse(text,integer,text,text,uuid,text,text,jsonb)",
}

# One line per function and per policy. Role names in grants are kept, except
# the owner's (whoever ran the migrations), which reads 'owner'.
CATALOGUE = r"""
with acl as (
    select p.oid,
           string_agg(case when a.grantee = 0 then 'public'
                           when a.grantee = p.proowner then 'owner'
                           else a.grantee::regrole::text end
                      || '=' || a.privilege_type
                      || case when a.is_grantable then '*' else '' end,
                      ',' order by 1) as acl
    from pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
    group by p.oid
)
select 'function ' || n.nspname || '.' || p.proname
       || '(' || pg_get_function_identity_arguments(p.oid) || ')'
       || ' returns ' || pg_get_function_result(p.oid)
       || ' | src ' || md5(p.prosrc)
       || ' | config ' || coalesce(array_to_string(p.proconfig, ','), '-')
       || ' | definer ' || p.prosecdef
       || ' | volatile ' || p.provolatile::text
       || ' | lang ' || l.lanname
       || ' | args ' || coalesce(md5(pg_get_function_arguments(p.oid)), '-')
       || ' | acl ' || coalesce(acl.acl, '-')
       || ' | comment ' || coalesce(md5(obj_description(p.oid, 'pg_proc')), '-')
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
join pg_language l on l.oid = p.prolang
left join acl on acl.oid = p.oid
where n.nspname in ('app', 'api', 'private')
union all
select 'policy ' || c.oid::regclass::text || '.' || pol.polname
       || ' | cmd ' || pol.polcmd::text
       || ' | permissive ' || pol.polpermissive
       || ' | roles ' || coalesce((
            select string_agg(case when r = 0 then 'public' else r::regrole::text end,
                              ',' order by 1)
            from unnest(pol.polroles) r), '-')
       || ' | using ' || coalesce(pg_get_expr(pol.polqual, pol.polrelid), '-')
       || ' | check ' || coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '-')
from pg_policy pol
join pg_class c on c.oid = pol.polrelid
order by 1
"""


def catalogue(url: str) -> str:
    with psycopg.connect(url) as conn:
        rows = conn.execute(CATALOGUE).fetchall()  # type: ignore[arg-type]
    return "".join(row[0] + "\n" for row in rows)


def sql_files() -> list[Path]:
    return sorted((ROOT / "sql").rglob("*.sql"))


def test_no_sql_file_over_450_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in sql_files()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by sub-domain (at most {MAX_LINES} lines): {long}"


def test_catalogue_matches_the_snapshot(scratch_url: str) -> None:  # noqa: F811
    """A database migrated from nothing from the current sql/ has exactly the
    functions and policies of the snapshot."""
    migrate(scratch_url)
    built = catalogue(scratch_url)
    assert built.count("\nfunction api.") > 30  # the query sees the schema
    expected = SNAPSHOT.read_text()
    if built != expected:
        import difflib
        diff = "".join(difflib.unified_diff(expected.splitlines(True), built.splitlines(True),
                                            "snapshot", "built", n=0))
        raise AssertionError("the catalogue differs from tests/data/catalogue.txt "
                             "(regenerate it when the change is on purpose, see the "
                             "module docstring):\n" + diff[:6000])


def function_oids(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute(
            "select p.oid::regprocedure::text, p.oid::int8 from pg_proc p "
            "where p.pronamespace in ('api'::regnamespace, 'private'::regnamespace)"
        ).fetchall())


def test_rebuild_after_the_split_keeps_the_catalogue(
        scratch_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """An existing database, its sql/ (and migrations) from before the split: the
    rebuild from the current sql/ (after the later migrations) drops no function
    (but those whose arguments changed on purpose,
    made again with the new ones) and ends at the catalogue of a new database;
    the next run changes nothing."""
    if shutil.which("git") is None or subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", BEFORE_SPLIT + "^{commit}"],
            capture_output=True).returncode != 0:
        pytest.skip("the commit before the split is not in this checkout's history")
    from gateway.tools import migrate as migrate_tool

    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_SPLIT, "sql",
                              "migrations"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    current = migrate_tool.SQL_DIR, migrate_tool.MIGRATIONS_DIR
    # The sql/ of then needs the tables of then (0043 replaced one its policies name).
    monkeypatch.setattr(migrate_tool, "SQL_DIR", tmp_path / "sql")
    monkeypatch.setattr(migrate_tool, "MIGRATIONS_DIR", tmp_path / "migrations")
    migrate_tool.migrate(scratch_url)
    before = function_oids(scratch_url)
    monkeypatch.setattr(migrate_tool, "SQL_DIR", current[0])
    monkeypatch.setattr(migrate_tool, "MIGRATIONS_DIR", current[1])
    assert migrate_tool.migrate(scratch_url).endswith("sql/ rebuilt")
    after = function_oids(scratch_url)
    kept = {name: oid for name, oid in before.items() if name not in CHANGED_SINCE_SPLIT}
    assert {name: after.get(name) for name in kept} == kept  # replaced in place
    assert [name for name in CHANGED_SINCE_SPLIT if name in after] == []  # dropped
    assert [new for new in CHANGED_SINCE_SPLIT.values() if new not in after] == []
    assert catalogue(scratch_url) == SNAPSHOT.read_text()
    assert migrate_tool.migrate(scratch_url).endswith("sql/ unchanged")


if __name__ == "__main__":  # writes the snapshot from DATABASE_URL
    SNAPSHOT.write_text(catalogue(os.environ["DATABASE_URL"]))
    print(f"wrote {SNAPSHOT.relative_to(ROOT)}", file=sys.stderr)
