"""Migrations on a database of their own: from nothing, twice, rolled back and
re-applied, through `python -m gateway migrate` and through plain yoyo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import ROOT
from gateway.tools.migrate import yoyo_url


@pytest.fixture
def scratch_url(database_url: str) -> Iterator[str]:
    """A new, empty database on the same server, dropped afterwards."""
    name = f"joinery_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(database_url)
    params["dbname"] = name
    yield make_conninfo(**params)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def run(args: list[str], url: str) -> str:
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def migrate(url: str) -> str:
    return run([sys.executable, "-m", "gateway", "migrate"], url).strip()


def yoyo(url: str, *args: str) -> str:
    return run([os.path.join(os.path.dirname(sys.executable), "yoyo"), *args,
                "--database", yoyo_url(url)], url)


def schema_snapshot(url: str) -> list[tuple]:
    """Tables, columns, indexes, constraints, functions (with their definitions),
    policies and grants."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("""
            select 'column', table_schema || '.' || table_name || '.' || column_name, data_type
            from information_schema.columns where table_schema in ('app', 'api', 'private')
            union all
            select 'function', p.oid::regprocedure::text,
                   md5(pg_get_functiondef(p.oid)) || coalesce(p.proacl::text, '')
            from pg_proc p
            where p.pronamespace in ('api'::regnamespace, 'private'::regnamespace,
                                     'app'::regnamespace)
            union all
            select 'constraint', c.conrelid::regclass::text || '.' || c.conname,
                   md5(pg_get_constraintdef(c.oid))
            from pg_constraint c where c.connamespace = 'app'::regnamespace
            union all
            select 'policy', schemaname || '.' || tablename || '.' || policyname,
                   coalesce(qual, '') || coalesce(with_check, '')
            from pg_policies where schemaname = 'app'
            union all
            select 'table', c.oid::regclass::text, coalesce(c.relacl::text, '')
            from pg_class c where c.relnamespace = 'app'::regnamespace and c.relkind = 'r'
            union all
            select 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            from pg_index i join pg_class c on c.oid = i.indrelid
            where c.relnamespace = 'app'::regnamespace
            order by 1, 2, 3
        """).fetchall()
    return rows


def test_migrate_from_nothing_twice_changes_nothing(scratch_url: str) -> None:
    count = len([p for p in (ROOT / "migrations").glob("0*.sql")
                 if not p.stem.endswith(".rollback")])
    assert migrate(scratch_url) == f"{count} migration(s) applied; sql/ rebuilt"
    first = schema_snapshot(scratch_url)
    assert migrate(scratch_url) == "0 migration(s) applied; sql/ unchanged"
    assert schema_snapshot(scratch_url) == first
    names = {row[1] for row in first if row[0] == "function"}
    assert "api.join_group(text)" in names
    assert "api.create_group_invite(uuid,integer,integer)" in names


def migration_ids() -> list[str]:
    return sorted(p.stem for p in (ROOT / "migrations").glob("0*.sql")
                  if not p.stem.endswith(".rollback"))


def after(migration: str) -> list[str]:
    """The migrations that come after `migration`."""
    ids = migration_ids()
    return ids[ids.index(migration) + 1:]


def test_rollback_last_migrations_and_reapply(scratch_url: str) -> None:
    """From 0015 on: the last that changes app before 0016, 0016 (yoyo's schema,
    nothing of app) and every later one, rolled back and applied again."""
    migrate(scratch_url)
    before = schema_snapshot(scratch_url)
    rolled = ["0015_invitee_email_index", *after("0015_invitee_email_index")]
    assert rolled[1] == "0016_migrations_schema"
    yoyo(scratch_url, "rollback", "--revision", rolled[0])
    after_rollback = schema_snapshot(scratch_url)
    assert after_rollback != before  # the last migration's objects are gone...
    kept = {row[1] for row in after_rollback if row[0] == "table"}
    assert {"app.profiles", "app.groups"} <= kept  # ...and only those
    # Rolled back, 0016 leaves yoyo's tables where the previous release keeps them.
    assert yoyo_tables(scratch_url) == [(name, "public") for name in YOYO_TABLES]
    # Re-applying brings back exactly the same schema (a rollback that drops tables
    # clears the code mark, so sql/ is rebuilt on them).
    assert migrate(scratch_url).startswith(f"{len(rolled)} migration(s) applied; sql/ ")
    assert schema_snapshot(scratch_url) == before
    assert yoyo_tables(scratch_url) == [(name, "joinery_migrations") for name in YOYO_TABLES]


YOYO_TABLES = ["_yoyo_log", "_yoyo_migration", "_yoyo_version", "yoyo_lock"]


def yoyo_tables(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select c.relname::text, c.relnamespace::regnamespace::text from pg_class c "
            "where c.relname = any(%s) and c.relkind = 'r' order by 1, 2",
            (YOYO_TABLES,)).fetchall()


def test_yoyo_tables_are_in_a_schema_no_api_role_can_use(scratch_url: str) -> None:
    migrate(scratch_url)
    assert yoyo_tables(scratch_url) == [(name, "joinery_migrations") for name in YOYO_TABLES]
    with psycopg.connect(scratch_url) as conn:
        rows = conn.execute("""
            select r.rolname::text,
                   has_schema_privilege(r.oid, 'joinery_migrations', 'USAGE'),
                   bool_or(has_table_privilege(r.oid, c.oid,
                           'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')),
                   bool_and(c.relrowsecurity)
            from pg_roles r cross join pg_class c
            where r.rolname in ('anon', 'authenticated', 'service_role', 'authenticator')
              and c.relnamespace = 'joinery_migrations'::regnamespace and c.relkind = 'r'
            group by r.rolname, r.oid order by 1""").fetchall()
    assert rows == [(role, False, False, True) for role in
                    ("anon", "authenticated", "authenticator", "service_role")]


def test_an_older_install_gets_its_yoyo_tables_moved(scratch_url: str) -> None:
    """As the previous release left it: yoyo's tables in public (its URL named no
    schema), every migration before 0016 applied. Its sql/ is not built: today's
    needs the tables of the migrations after 0016 (0031_webhooks' row types), so
    migrate applies 0016 and those, then builds sql/."""
    applied = apply_up_to(scratch_url, "0015_invitee_email_index", in_public=True)
    old_url = yoyo_url(scratch_url).split("?")[0]
    assert yoyo_tables(scratch_url) == [(name, "public") for name in YOYO_TABLES]

    # The previous release's plain `yoyo apply` (no schema in the URL) is refused by 0016
    # before it moves anything: otherwise it would lose its tables half-way.
    refused = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "yoyo"), "apply", "--database", old_url],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "yoyo must keep its tables in schema joinery_migrations" in refused.stderr
    assert yoyo_tables(scratch_url) == [(name, "public") for name in YOYO_TABLES]

    newer = after("0015_invitee_email_index")  # 0016 and every later one
    assert migrate(scratch_url) == f"{len(newer)} migration(s) applied; sql/ rebuilt"
    assert yoyo_tables(scratch_url) == [(name, "joinery_migrations") for name in YOYO_TABLES]
    with psycopg.connect(scratch_url) as conn:
        marked = conn.execute("select count(*) from joinery_migrations._yoyo_migration"
                              ).fetchone()
        locks = conn.execute("select count(*) from joinery_migrations.yoyo_lock").fetchone()
    assert marked == (applied + len(newer),) and locks == (0,)
    assert migrate(scratch_url) == "0 migration(s) applied; sql/ unchanged"
    # Plain yoyo with the URL yoyo.ini advises finds everything applied.
    listed = yoyo(scratch_url, "list").splitlines()[2:]
    assert [line.split()[:2] for line in listed] == [
        ["A", name] for name in migration_ids()]


def test_plain_yoyo_on_an_older_install_moves_the_tables(scratch_url: str) -> None:
    apply_up_to(scratch_url, "0015_invitee_email_index", in_public=True)
    assert yoyo_tables(scratch_url) == [(name, "public") for name in YOYO_TABLES]
    yoyo(scratch_url, "apply")
    assert yoyo_tables(scratch_url) == [(name, "joinery_migrations") for name in YOYO_TABLES]
    assert migrate(scratch_url) == "0 migration(s) applied; sql/ unchanged"


def test_plain_yoyo_apply_builds_everything(scratch_url: str) -> None:
    yoyo(scratch_url, "apply")
    with psycopg.connect(scratch_url) as conn:
        found = conn.execute(
            "select to_regprocedure('api.join_group(text)') is not null, "
            "(select count(*) from pg_policies where schemaname = 'app') > 0").fetchone()
    assert found == (True, True)
    assert migrate(scratch_url) == "0 migration(s) applied; sql/ unchanged"


@pytest.mark.superuser("sets the password of role authenticator")
def test_authenticator_password_is_set_when_given(scratch_url: str) -> None:
    env_password = "s3cret-for-the-test"
    env = {**os.environ, "DATABASE_URL": scratch_url, "AUTHENTICATOR_PASSWORD": env_password}
    done = subprocess.run([sys.executable, "-m", "gateway", "migrate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(scratch_url) as conn:
        row = conn.execute(
            "select rolpassword is not null from pg_authid where rolname = 'authenticator'"
        ).fetchone()
    assert row == (True,)
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute("alter role authenticator with password null")


@pytest.fixture
def as_role_without_createrole(scratch_url: str) -> Iterator[str]:
    """The scratch database, owned by a login role that may not alter other roles
    (as Supabase's `postgres` may not alter the reserved `authenticator`)."""
    role = f"joinery_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login nocreaterole").format(sql.Identifier(role)))
        conn.execute(sql.SQL("alter database {} owner to {}").format(
            sql.Identifier(conn.info.dbname), sql.Identifier(role)))
    params = conninfo_to_dict(scratch_url)
    params["user"] = role
    yield make_conninfo(**params)
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(sql.SQL("alter database {} owner to current_user").format(
            sql.Identifier(conn.info.dbname)))
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


@pytest.mark.superuser("makes a role and gives it a database (make test-supabase checks "
                       "the refusal on Supabase's reserved authenticator)")
def test_a_password_that_cannot_be_set_is_refused_before_any_change(
        scratch_url: str, as_role_without_createrole: str) -> None:
    env = {**os.environ, "DATABASE_URL": as_role_without_createrole,
           "AUTHENTICATOR_PASSWORD": "never-set"}
    done = subprocess.run([sys.executable, "-m", "gateway", "migrate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout == ""
    role = conninfo_to_dict(as_role_without_createrole)["user"]
    assert re.match(
        f"python -m gateway migrate: AUTHENTICATOR_PASSWORD is set, but {role} may not set "
        "the password of "
        r"role authenticator \(permission denied[^)]*\)\. Nothing was changed\. ", done.stderr)
    assert "Deploy onto Supabase" in done.stderr
    with psycopg.connect(scratch_url) as conn:
        found = conn.execute(
            "select count(*) from pg_namespace where nspname in ('app', 'api', 'private', "
            "'joinery_migrations') or nspname = 'public' and exists "
            "(select from pg_class where relnamespace = 'public'::regnamespace)").fetchone()
        password = conn.execute(
            "select rolpassword from pg_authid where rolname = 'authenticator'").fetchone()
    assert found == (0,)
    assert password == (None,)


def apply_up_to(url: str, last: str, in_public: bool = False) -> int:
    """Applies the migrations up to `last` only, without sql/ (as an older release left
    the tables); with `in_public`, yoyo keeps its tables in public, as releases before
    0016 did. Returns how many were applied."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(url).split("?")[0] if in_public else yoyo_url(url))
    migrations = read_migrations(str(ROOT / "migrations"))
    wanted = migrations.filter(lambda m: m.id <= last)
    with backend.lock():
        backend.apply_migrations_only(backend.to_apply(wanted))
    backend.connection.close()
    return len(wanted)


def test_audit_rows_survive_partitioning_and_prune_by_age(scratch_url: str) -> None:
    apply_up_to(scratch_url, "0007_mail_stops")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        assert conn.execute("select relkind::text from pg_class "
                            "where oid = 'app.audit_log'::regclass").fetchone() == ("r",)
        conn.execute("""
            insert into app.audit_log (actor_id, action, outcome, status, details, created_at)
            values (gen_random_uuid(), 'group.join', 'joined', 200, '{"n": 1}',
                    now() - interval '400 days'),
                   (null, 'group.join', 'not_found', 404, '{"n": 2}', now() - interval '40 days'),
                   (gen_random_uuid(), 'pair_invite.accept', 'accepted', 200, '{"n": 3}', now())""")
        before = conn.execute("select id, actor_id, action, outcome, status, details, created_at "
                              "from app.audit_log order by id").fetchall()
    assert len(before) == 3

    later = sum(1 for m in (ROOT / "migrations").glob("0*.sql")
                if not m.stem.endswith(".rollback") and m.stem > "0007_mail_stops")
    assert migrate(scratch_url) == f"{later} migration(s) applied; sql/ rebuilt"
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        after = conn.execute("select id, actor_id, action, outcome, status, details, created_at "
                             "from app.audit_log order by id").fetchall()
        assert after == before
        assert conn.execute("select relkind::text from pg_class "
                            "where oid = 'app.audit_log'::regclass").fetchone() == ("p",)
        homes = conn.execute("select tableoid::regclass::text from app.audit_log "
                             "order by id").fetchall()
        assert all(re.fullmatch(r"app\.audit_log_p\d{6}", h) for (h,) in homes), homes
        new_id = conn.execute("insert into app.audit_log (action, outcome, status) "
                              "values ('x', 'y', 200) returning id").fetchone()
        assert new_id is not None and new_id[0] > before[-1][0]

    pruned = run([sys.executable, "-m", "gateway", "audit-prune", "--older-than-days", "100"],
                 scratch_url)
    oldest = before[0][6].astimezone(UTC).strftime("%Y%m")
    # With the default partition there, PostgreSQL refuses DETACH ... CONCURRENTLY.
    assert f"dropped app.audit_log_p{oldest} (detached with lock_timeout)" in pruned.splitlines()
    with psycopg.connect(scratch_url) as conn:
        kept = conn.execute("select details ->> 'n' from app.audit_log "
                            "where details ? 'n' order by id").fetchall()
    assert kept == [("2",), ("3",)]
    again = run([sys.executable, "-m", "gateway", "audit-prune", "--older-than-days", "100"],
                scratch_url)
    assert again.strip() == "nothing to do (retention 100 days)"


@pytest.mark.superuser("marks a partition detach-pending in pg_inherits")
def test_prune_detaches_concurrently_without_a_default_partition(scratch_url: str) -> None:
    """An operator who dropped the default partition: prune detaches CONCURRENTLY,
    and finishes a concurrent detach that was interrupted (FINALIZE)."""
    migrate(scratch_url)
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute("drop table app.audit_log_default")
        for month in ("201901", "201902"):
            start = f"{month[:4]}-{month[4:]}-01 00:00+00"
            conn.execute(sql.SQL(
                "create table app.{} partition of app.audit_log for values from ({}) "
                "to ({}::timestamptz + interval '1 month')").format(
                    sql.Identifier(f"audit_log_p{month}"), sql.Literal(start),
                    sql.Literal(start)))
        # What an interrupted DETACH ... CONCURRENTLY leaves: the partition marked
        # detach-pending (set here directly, as a cancelled detach would).
        conn.execute("update pg_inherits set inhdetachpending = true "
                     "where inhrelid = 'app.audit_log_p201902'::regclass")
    pruned = run([sys.executable, "-m", "gateway", "prune", "--older-than-days", "100"],
                 scratch_url)
    assert pruned.splitlines() == [
        "dropped app.audit_log_p201902 (detached finalized)",
        "dropped app.audit_log_p201901 (detached concurrently)"]
    with psycopg.connect(scratch_url) as conn:
        left = conn.execute("select count(*) from pg_class where relname in "
                            "('audit_log_p201901', 'audit_log_p201902')").fetchone()
    assert left == (0,)


def test_a_big_audit_log_is_attached_not_copied(scratch_url: str) -> None:
    """Past joinery.audit_copy_max_rows (here 2, given through PGOPTIONS), migration
    0008 makes the old table a partition (app.audit_log_legacy, up to next
    month) instead of copying its rows; the monthly partitions start next month,
    entries of this month go to the legacy partition, prune and migrate keep
    working, and prune drops it whole only once its last month is past."""
    apply_up_to(scratch_url, "0007_mail_stops")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute("""
            insert into app.audit_log (actor_id, action, outcome, status, details, created_at)
            values (gen_random_uuid(), 'group.join', 'joined', 200, '{"n": 1}',
                    now() - interval '400 days'),
                   (null, 'group.join', 'not_found', 404, '{"n": 2}', now() - interval '40 days'),
                   (gen_random_uuid(), 'pair_invite.accept', 'accepted', 200, '{"n": 3}', now())""")
        before = conn.execute("select id, actor_id, action, outcome, status, details, created_at "
                              "from app.audit_log order by id").fetchall()
        old_file = conn.execute("select pg_relation_filenode('app.audit_log')").fetchone()
    env = {**os.environ, "DATABASE_URL": scratch_url,
           "PGOPTIONS": "-c joinery.audit_copy_max_rows=2"}
    done = subprocess.run([sys.executable, "-m", "gateway", "migrate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        after = conn.execute("select id, actor_id, action, outcome, status, details, created_at "
                             "from app.audit_log order by id").fetchall()
        assert after == before
        # The same table, its file untouched: attached, not copied.
        assert conn.execute("select pg_relation_filenode('app.audit_log_legacy')"
                            ).fetchone() == old_file
        homes = conn.execute("select distinct tableoid::regclass::text from app.audit_log"
                             ).fetchall()
        assert homes == [("app.audit_log_legacy",)]
        bound = conn.execute(
            "select pg_get_expr(relpartbound, oid) = format('FOR VALUES FROM (MINVALUE) TO (%L)', "
            "date_trunc('month', now(), 'UTC') + interval '1 month') "
            "from pg_class where oid = 'app.audit_log_legacy'::regclass").fetchone()
        assert bound == (True,)
        monthly = conn.execute(
            "select count(*) from pg_inherits where inhparent = 'app.audit_log'::regclass "
            "and inhrelid::regclass::text ~ '^app\\.audit_log_p[0-9]{6}$'").fetchone()
        assert monthly == (3,)  # next month to three months ahead; this one is the legacy's
        new = conn.execute("insert into app.audit_log (action, outcome, status) "
                           "values ('x', 'y', 200) returning id, tableoid::regclass::text"
                           ).fetchone()
        assert new is not None and new[0] > before[-1][0] and new[1] == "app.audit_log_legacy"
        # The append-only trigger reaches the legacy partition too.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("delete from app.audit_log_legacy")
    pruned = run([sys.executable, "-m", "gateway", "prune", "--older-than-days", "100"],
                 scratch_url)
    assert "audit_log_legacy" not in pruned
    assert migrate(scratch_url) == "0 migration(s) applied; sql/ unchanged"
    # verify counts this month as covered (by the legacy partition).
    with psycopg.connect(scratch_url) as conn:
        found = conn.execute("select invariant, broken from private.verify() "
                             "where invariant = 'audit_partitions'").fetchall()
    assert found == [("audit_partitions", 0)]


def test_stored_stops_are_brought_to_their_canonical_form(scratch_url: str) -> None:
    """Stops made before the alias rules (issue 18) hold for every alias after them."""
    apply_up_to(scratch_url, "0012_stop_limits")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute("insert into app.mail_stops (email, created_at) values "
                     "('f.oo+x@googlemail.com', now() - interval '2 days'), "
                     "('foo@gmail.com', now() - interval '1 day'), "
                     "('bar+news@example.org', now()), ('plain@example.org', now())")
    migrate(scratch_url)
    with psycopg.connect(scratch_url) as conn:
        stops = conn.execute("select email, created_at < now() - interval '36 hours' "
                             "from app.mail_stops order by email").fetchall()
    assert stops == [("bar@example.org", False), ("foo@gmail.com", True),
                     ("plain@example.org", False)]


def test_migrations_after_0042_change_existing_tables_online() -> None:
    """gateway/tools/lint.py's migration rules hold for every migration file."""
    from gateway.tools.lint import lint_migrations

    assert lint_migrations() == []


ONLINE_HEADER = "-- transactional: false\n-- depends: 0042_mail_lease\n"


@pytest.mark.parametrize(("name", "text", "found"), [
    # A CHECK or FOREIGN KEY on an existing table: NOT VALID, then VALIDATE.
    ("0050_x", "alter table app.events add constraint events_x check (capacity > 0);",
     ["migration_constraint_not_valid: 0050_x: app.events: CHECK events_x on an existing "
      "table: add it NOT VALID, then VALIDATE CONSTRAINT in a later statement"]),
    ("0050_x", "alter table app.chats add constraint chats_x foreign key (event_id) "
               "references app.events (id) not valid;",
     ["migration_constraint_not_valid: 0050_x: app.chats: FOREIGN KEY chats_x is added NOT "
      "VALID and never validated (VALIDATE CONSTRAINT after it)"]),
    ("0050_x", "alter table app.chats add constraint chats_x foreign key (event_id) "
               "references app.events (id) not valid;\n"
               "alter table app.chats validate constraint chats_x;", []),
    # An index on an existing table: CONCURRENTLY, which needs the header.
    ("0050_x", "create index events_x_idx on app.events (capacity);",
     ["migration_index_concurrently: 0050_x: app.events: index on an existing table: "
      "CREATE INDEX CONCURRENTLY (with -- transactional: false)"]),
    ("0050_x", "create index concurrently events_x_idx on app.events (capacity);",
     ["migration_index_concurrently: 0050_x: CONCURRENTLY needs `-- transactional: false` "
      "in the header"]),
    ("0050_x", ONLINE_HEADER + "create unique index concurrently if not exists events_x_idx "
               "on app.events (capacity);", []),
    # A table the migration creates is empty: anything goes on it.
    ("0050_x", "create table app.x (id integer primary key, n integer);\n"
               "alter table app.x add constraint x_n check (n > 0);\n"
               "create index x_n_idx on app.x (n);", []),
    # A UNIQUE is not this rule's (its index is: build it CONCURRENTLY, then ADD
    # CONSTRAINT ... USING INDEX), and migrations up to 0042 stay as they are.
    ("0050_x", "alter table app.x add constraint x_key unique (n);", []),
    ("0042_x", "alter table app.events add constraint events_x check (capacity > 0);", []),
])
def test_migration_rules(name: str, text: str, found: list[str]) -> None:
    from gateway.tools.lint import migration_problems

    assert [str(p) for p in migration_problems(name, text)] == found


def test_a_rollback_building_concurrently_needs_its_migration_non_transactional() -> None:
    from gateway.tools.lint import migration_problems

    rollback = "create index concurrently if not exists x_idx on app.events (capacity);"
    assert [str(p) for p in migration_problems("0050_x.rollback", rollback, "-- depends: y\n")
            ] == ["migration_index_concurrently: 0050_x.rollback: CONCURRENTLY needs "
                  "`-- transactional: false` in the header of the migration"]
    assert migration_problems("0050_x.rollback", rollback, ONLINE_HEADER) == []


def test_open_windows_carry_over_into_counters_and_back(scratch_url: str) -> None:
    """0043: the hits of windows still open become one counter per user and bucket
    (opened at the oldest of them, counting them); hits whose window has closed are
    left behind. The log stays until the rebuild of sql/ drops it (the functions
    serving requests until then still write it). Its rollback makes the log again
    from the counters, one hit per counted attempt at the window's start, when the
    rebuild had dropped it, and leaves it as it is otherwise."""
    from gateway.tools import migrate as migrate_tool

    apply_up_to(scratch_url, "0042_mail_lease")
    a, b = "a0430000-0000-4000-8000-000000000001", "a0430000-0000-4000-8000-000000000002"
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute("""
            insert into app.rate_limit_hits (user_id, bucket, created_at)
            select %(a)s::uuid, 'join_code', now() - interval '50 seconds'
            from generate_series(1, 3)
            union all select %(a)s, 'join_code', now() - interval '10 seconds'
            union all select %(a)s, 'join_code', now() - interval '2 minutes'
            union all select %(a)s, 'create_invite', now() - interval '30 minutes'
            union all select %(b)s, 'join_code', now() - interval '61 seconds'""",
                     {"a": a, "b": b})

    def counters(conn: psycopg.Connection) -> None:
        # Ages in seconds, from a now() a little later than the inserts'.
        rows = conn.execute("""
            select user_id::text, bucket, hits, extract(epoch from now() - window_start)::float
            from app.rate_limit_counters order by 1, 2""").fetchall()
        assert [r[:3] for r in rows] == [(a, "create_invite", 1), (a, "join_code", 4)]
        assert 1800 <= rows[0][3] < 1810 and 50 <= rows[1][3] < 60, rows

    def log_size(conn: psycopg.Connection) -> int:
        return conn.execute("select count(*) from app.rate_limit_hits").fetchone()[0]  # type: ignore[index]

    apply_up_to(scratch_url, "0043_rate_limit_counters")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        counters(conn)
        assert log_size(conn) == 7  # untouched, until the rebuild
    yoyo(scratch_url, "rollback", "--revision", "0043_rate_limit_counters")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        assert log_size(conn) == 7  # still there: nothing added to it
        assert conn.execute("select to_regclass('app.rate_limit_counters')").fetchone() == (None,)
    apply_up_to(scratch_url, "0043_rate_limit_counters")
    retired = (ROOT / "sql" / "policies" / "99_retired.sql").read_text()
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        counters(conn)
        conn.execute(retired)  # what the rebuild does after replacing the functions
        assert conn.execute("select to_regclass('app.rate_limit_hits')").fetchone() == (None,)
    yoyo(scratch_url, "rollback", "--revision", "0043_rate_limit_counters")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        hits = conn.execute("""
            select user_id::text, bucket, count(*), count(distinct created_at),
                   min(extract(epoch from now() - created_at))::float
            from app.rate_limit_hits group by 1, 2 order by 1, 2""").fetchall()
        assert [h[:4] for h in hits] == [(a, "create_invite", 1, 1), (a, "join_code", 4, 1)]
        assert 1800 <= hits[0][4] < 1810 and 50 <= hits[1][4] < 60, hits
        assert conn.execute("select to_regclass('app.rate_limit_counters')").fetchone() == (None,)
    # The whole migrate: the migrations, then the rebuild, which drops the log.
    assert migrate_tool.migrate(scratch_url).endswith("sql/ rebuilt")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        assert conn.execute("select to_regclass('app.rate_limit_hits')").fetchone() == (None,)
        # The half-hour-old attempt is in an open window still (the minute-long
        # join_code window may have closed by now).
        assert conn.execute("select user_id::text, hits from app.rate_limit_counters "
                            "where bucket = 'create_invite'").fetchall() == [(a, 1)]
