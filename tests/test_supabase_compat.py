"""The migrations on a database that already has Supabase's `auth` schema and roles,
made here the way Supabase's postgres image and Supabase Auth make them: they apply,
leave every Supabase object as it was (but for our trigger on auth.users), and an
account inserted into auth.users as Supabase Auth does gets its profile.

Roles are cluster-wide: anon, authenticated, service_role and authenticator usually
exist already in the test cluster (the database was migrated before the tests), so
only the missing ones are created, with Supabase's attributes, and left in place as
the migrations leave theirs. Where they exist, their attributes are ours
(NOINHERIT), not today's Supabase ones (anon, authenticated and service_role are
INHERIT there since 2023); the migrations do not depend on that attribute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from conftest import ROOT

# A database of its own with Supabase's roles and auth schema, made by creating roles
# (service_role BYPASSRLS), a database and objects as supabase_auth_admin.
pytestmark = pytest.mark.superuser("creates Supabase's roles and a database shaped as its own")

SUPABASE_ROLES = ("anon", "authenticated", "service_role", "authenticator", "supabase_auth_admin")
OUR_TRIGGER = "joinery_on_auth_user_created"
# Before an account's deletion: its group memberships go one group at a time,
# keeping app.groups.member_count (issue 19, item 11).
OUR_DELETE_TRIGGER = "joinery_on_auth_user_deleted"

# Each role as Supabase's image creates it; created only where missing.
ROLE_DDL = {
    "anon": "create role anon nologin noinherit",
    "authenticated": "create role authenticated nologin noinherit",
    "service_role": "create role service_role nologin noinherit bypassrls",
    "authenticator": "create role authenticator login noinherit",
    "supabase_auth_admin": "create role supabase_auth_admin login noinherit noreplication",
}

# Supabase's auth schema: owned by supabase_auth_admin, usage for the API roles and for
# postgres ({admin}); auth.users with Supabase Auth's columns, RLS on, all privileges for
# postgres (select with grant option);
# auth.uid(), auth.role(), auth.email() and auth.jwt() reading the legacy per-claim settings
# first, then request.jwt.claims, owned by supabase_auth_admin (EXECUTE left to PUBLIC).
AUTH_SCHEMA = """
create schema auth authorization supabase_auth_admin;
grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema auth to {admin};
set role supabase_auth_admin;

create table auth.users (
    instance_id uuid,
    id uuid not null,
    aud varchar(255),
    "role" varchar(255),
    email varchar(255),
    encrypted_password varchar(255),
    email_confirmed_at timestamptz,
    invited_at timestamptz,
    confirmation_token varchar(255),
    confirmation_sent_at timestamptz,
    recovery_token varchar(255),
    recovery_sent_at timestamptz,
    email_change_token_new varchar(255),
    email_change varchar(255),
    email_change_sent_at timestamptz,
    last_sign_in_at timestamptz,
    raw_app_meta_data jsonb,
    raw_user_meta_data jsonb,
    is_super_admin boolean,
    created_at timestamptz,
    updated_at timestamptz,
    phone text default null,
    phone_confirmed_at timestamptz,
    phone_change text default '',
    phone_change_token varchar(255) default '',
    phone_change_sent_at timestamptz,
    confirmed_at timestamptz
        generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
    email_change_token_current varchar(255) default '',
    email_change_confirm_status smallint default 0
        check (email_change_confirm_status >= 0 and email_change_confirm_status <= 2),
    banned_until timestamptz,
    reauthentication_token varchar(255) default '',
    reauthentication_sent_at timestamptz,
    is_sso_user boolean not null default false,
    deleted_at timestamptz,
    is_anonymous boolean not null default false,
    constraint users_pkey primary key (id),
    constraint users_phone_key unique (phone)
);
create index users_instance_id_idx on auth.users (instance_id);
create index users_instance_id_email_idx on auth.users (instance_id, lower(email::text));
create unique index users_email_partial_key on auth.users (email) where is_sso_user = false;
create index users_is_anonymous_idx on auth.users (is_anonymous);
comment on table auth.users is 'Auth: Stores user login data within a secure schema.';
alter table auth.users enable row level security;

create function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
create function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
create function auth.email() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;
create function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;
comment on function auth.uid() is 'Deprecated. Use auth.jwt() -> ''sub'' instead.';
comment on function auth.role() is 'Deprecated. Use auth.jwt() -> ''role'' instead.';
comment on function auth.email() is 'Deprecated. Use auth.jwt() -> ''email'' instead.';

grant all on auth.users to {admin};
grant select on auth.users to {admin} with grant option;
grant all on function auth.uid(), auth.role(), auth.email(), auth.jwt() to {admin};
reset role;
"""

# Everything of Supabase's that the migrations must leave alone. Triggers on auth.users
# are kept apart: the migrations add exactly one.
FINGERPRINT = {
    "schema": """
        select n.nspname, n.nspowner::regrole::text, coalesce(n.nspacl::text, ''),
               coalesce(obj_description(n.oid, 'pg_namespace'), '')
        from pg_namespace n where n.nspname = 'auth'
    """,
    "relations": """
        select c.oid::regclass::text, c.relkind::text, c.relowner::regrole::text,
               coalesce(c.relacl::text, ''), c.relrowsecurity::text, c.relforcerowsecurity::text,
               coalesce(obj_description(c.oid, 'pg_class'), '')
        from pg_class c where c.relnamespace = 'auth'::regnamespace
        order by 1
    """,
    "columns": """
        select a.attrelid::regclass::text, a.attnum::text, a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull::text,
               coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attgenerated::text,
               coalesce(a.attacl::text, '')
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where c.relnamespace = 'auth'::regnamespace and c.relkind = 'r'
          and a.attnum > 0 and not a.attisdropped
        order by 1, a.attnum
    """,
    "constraints": """
        select conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        from pg_constraint where connamespace = 'auth'::regnamespace
        order by 1, 2
    """,
    "indexes": """
        select indexrelid::regclass::text, pg_get_indexdef(indexrelid)
        from pg_index where indrelid in (select oid from pg_class
                                         where relnamespace = 'auth'::regnamespace)
        order by 1
    """,
    "policies": """
        select tablename, policyname, cmd, roles::text, coalesce(qual, ''),
               coalesce(with_check, '')
        from pg_policies where schemaname = 'auth' order by 1, 2
    """,
    "functions": """
        select p.oid::regprocedure::text, p.proowner::regrole::text,
               md5(pg_get_functiondef(p.oid)), coalesce(p.proacl::text, ''),
               coalesce(obj_description(p.oid, 'pg_proc'), '')
        from pg_proc p where p.pronamespace = 'auth'::regnamespace
        order by 1
    """,
    "roles": """
        select r.rolname, r.rolsuper::text, r.rolinherit::text, r.rolcreaterole::text,
               r.rolcreatedb::text, r.rolcanlogin::text, r.rolreplication::text,
               r.rolbypassrls::text, r.rolconnlimit::text, coalesce(r.rolconfig::text, ''),
               coalesce((select string_agg(g.rolname || ':' || m.admin_option::text, ','
                                           order by g.rolname)
                         from pg_auth_members m join pg_roles g on g.oid = m.roleid
                         where m.member = r.oid), '')
        from pg_roles r where r.rolname = any(%(roles)s)
        order by 1
    """,
    "default_privileges": """
        select defaclrole::regrole::text, defaclobjtype::text, defaclacl::text
        from pg_default_acl where defaclnamespace = 'auth'::regnamespace
        order by 1, 2
    """,
}

AUTH_USER_TRIGGERS = """
    select t.tgname, t.tgfoid::regprocedure::text, t.tgenabled::text,
           pg_get_triggerdef(t.oid)
    from pg_trigger t
    where t.tgrelid = 'auth.users'::regclass and not t.tgisinternal
    order by 1
"""


def fingerprint(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(query, {"roles": list(SUPABASE_ROLES)}).fetchall()
                for name, query in FINGERPRINT.items()}


def auth_user_triggers(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(AUTH_USER_TRIGGERS).fetchall()


def migrate(url: str) -> str:
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("AUTHENTICATOR_PASSWORD", None)
    done = subprocess.run([sys.executable, "-m", "gateway", "migrate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def create_missing_roles(conn: psycopg.Connection) -> list[str]:
    """Creates the Supabase roles this cluster lacks; returns the names it created."""
    created = []
    for name, ddl in ROLE_DDL.items():
        # `select from` gives a row of no columns, (), which is falsy: compare with None.
        if conn.execute("select from pg_roles where rolname = %s", (name,)).fetchone() is not None:
            continue
        try:
            conn.execute(ddl)  # type: ignore[arg-type]  # constant text above
        except psycopg.errors.DuplicateObject:
            continue  # made meanwhile by another session: it exists, as wanted
        created.append(name)
    # As Supabase's image: the API roles are granted to authenticator.
    for name in ("anon", "authenticated", "service_role"):
        conn.execute(sql.SQL("grant {} to authenticator").format(sql.Identifier(name)))
    return created


def create_supabase_database(database_url: str, name: str, admin: str) -> str:
    """A new database holding Supabase's roles and auth schema (and nothing of ours), with
    `admin` in the place of Supabase's `postgres` role (owner of the database)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_missing_roles(conn)
        conn.execute(sql.SQL("create database {} owner {}").format(
            sql.Identifier(name), sql.Identifier(admin)))
    params = conninfo_to_dict(database_url)
    params["dbname"] = name
    url = make_conninfo(**params)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(sql.SQL(AUTH_SCHEMA).format(admin=sql.Identifier(admin)))
    return url


def drop_database(database_url: str, name: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def supabase_url(database_url: str) -> Iterator[str]:
    """Supabase's auth schema in a new database, migrated as the cluster's superuser."""
    name = f"joinery_supa_{uuid.uuid4().hex[:8]}"
    yield create_supabase_database(database_url, name, "postgres")
    drop_database(database_url, name)


def insert_auth_user(url: str, email: str, meta: dict | None, *, confirmed: bool = True) -> str:
    """A sign-up as Supabase Auth writes it, connected as supabase_auth_admin; with
    confirmed=False, before the address is confirmed (email_confirmed_at null)."""
    with psycopg.connect(url) as conn:
        conn.execute("set role supabase_auth_admin")
        row = conn.execute(
            """
            insert into auth.users (instance_id, id, aud, role, email, encrypted_password,
                                    email_confirmed_at, raw_app_meta_data, raw_user_meta_data,
                                    is_super_admin, created_at, updated_at, is_sso_user,
                                    is_anonymous)
            values ('00000000-0000-0000-0000-000000000000', gen_random_uuid(),
                    'authenticated', 'authenticated', %s,
                    '$2a$10$abcdefghijklmnopqrstuuJ0m5e2Zb4m0m3n4J8o9p7q6r5s4t3u2',
                    case when %s then now() end, %s, %s, null, now(), now(), false, false)
            returning id
            """,
            (email, confirmed, Jsonb({"provider": "email", "providers": ["email"]}),
             None if meta is None else Jsonb(meta)),
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_setup_is_supabase_shaped(supabase_url: str) -> None:
    """The stand-in itself, so that the next test compares against what it claims."""
    before = fingerprint(supabase_url)
    assert before["schema"] == [(
        "auth", "supabase_auth_admin",
        "{supabase_auth_admin=UC/supabase_auth_admin,anon=U/supabase_auth_admin,"
        "authenticated=U/supabase_auth_admin,service_role=U/supabase_auth_admin,"
        "postgres=U/supabase_auth_admin}", "")]
    assert [row[:5] for row in before["relations"]] == [
        ("auth.users", "r", "supabase_auth_admin",
         "{supabase_auth_admin=arwdDxt/supabase_auth_admin,"
         "postgres=ar*wdDxt/supabase_auth_admin}",
         "true"),
        ("auth.users_email_partial_key", "i", "supabase_auth_admin", "", "false"),
        ("auth.users_instance_id_email_idx", "i", "supabase_auth_admin", "", "false"),
        ("auth.users_instance_id_idx", "i", "supabase_auth_admin", "", "false"),
        ("auth.users_is_anonymous_idx", "i", "supabase_auth_admin", "", "false"),
        ("auth.users_phone_key", "i", "supabase_auth_admin", "", "false"),
        ("auth.users_pkey", "i", "supabase_auth_admin", "", "false"),
    ]
    columns = [row[2] for row in before["columns"]]
    assert len(columns) == 35
    assert columns[:2] == ["instance_id", "id"]
    assert {"email", "raw_user_meta_data", "raw_app_meta_data", "created_at", "aud", "role",
            "encrypted_password", "confirmed_at", "is_anonymous"} <= set(columns)
    assert [row[0] for row in before["functions"]] == [
        "auth.email()", "auth.jwt()", "auth.role()", "auth.uid()"]
    assert {row[1] for row in before["functions"]} == {"supabase_auth_admin"}
    roles = {row[0]: row for row in before["roles"]}
    assert set(roles) == set(SUPABASE_ROLES)
    # rolcanlogin and rolbypassrls as Supabase has them.
    assert {name: (row[5], row[7]) for name, row in roles.items()} == {
        "anon": ("false", "false"), "authenticated": ("false", "false"),
        "service_role": ("false", "true"), "authenticator": ("true", "false"),
        "supabase_auth_admin": ("true", "false"),
    }
    assert roles["authenticator"][2] == "false"  # NOINHERIT
    assert set(roles["authenticator"][10].split(",")) >= {
        "anon:false", "authenticated:false", "service_role:false"}
    assert auth_user_triggers(supabase_url) == []


def test_migrate_leaves_supabase_objects_alone(supabase_url: str) -> None:
    before = fingerprint(supabase_url)
    count = len([p for p in (ROOT / "migrations").glob("0*.sql")
                 if not p.stem.endswith(".rollback")])

    assert migrate(supabase_url) == f"{count} migration(s) applied; sql/ rebuilt"

    after = fingerprint(supabase_url)
    for part, rows in before.items():
        assert after[part] == rows, f"the migrations changed Supabase's {part}"
    triggers = auth_user_triggers(supabase_url)
    assert [(name, fn, enabled) for name, fn, enabled, _ in triggers] == [
        (OUR_TRIGGER, "private.handle_new_user()", "O"),
        (OUR_DELETE_TRIGGER, "private.handle_deleted_user()", "O")]
    assert [t[3] for t in triggers] == [
        f"CREATE TRIGGER {OUR_TRIGGER} AFTER INSERT ON auth.users "
        "FOR EACH ROW EXECUTE FUNCTION private.handle_new_user()",
        f"CREATE TRIGGER {OUR_DELETE_TRIGGER} BEFORE DELETE ON auth.users "
        "FOR EACH ROW EXECUTE FUNCTION private.handle_deleted_user()"]

    # Supabase's auth.uid() is the one our functions and policies use.
    with psycopg.connect(supabase_url) as conn:
        uses = conn.execute("""
            select count(*) from pg_depend d
            where d.refobjid = 'auth.uid()'::regprocedure and d.classid = 'pg_policy'::regclass
        """).fetchone()
    assert uses is not None and uses[0] > 0

    # A second run changes nothing.
    assert migrate(supabase_url) == "0 migration(s) applied; sql/ unchanged"
    assert fingerprint(supabase_url) == before
    assert auth_user_triggers(supabase_url) == triggers


def test_sign_up_through_supabase_auth_creates_profile(supabase_url: str) -> None:
    migrate(supabase_url)
    named = insert_auth_user(supabase_url, "ada@example.com", {"display_name": "Ada L."})
    # Supabase Auth may leave raw_user_meta_data null: the email's local part is the name.
    unnamed = insert_auth_user(supabase_url, "grace.h@example.com", None)

    with psycopg.connect(supabase_url) as conn:
        rows = conn.execute(
            "select id::text, display_name from app.profiles order by display_name").fetchall()
    assert rows == [(named, "Ada L."), (unnamed, "grace.h")]

    # The account then calls our API through Supabase's auth.uid(), as the gateway would.
    with psycopg.connect(supabase_url) as conn:
        conn.execute("set local role authenticated")
        claims = {"sub": named, "role": "authenticated", "email": "ada@example.com"}
        conn.execute("select set_config('request.jwt.claims', %s, true)",
                     (json.dumps(claims),))
        me = conn.execute("select api.me()").fetchone()
        group = conn.execute("select api.create_group(name => 'Supabase crew')").fetchone()
    assert me is not None and group is not None
    assert {k: me[0][k] for k in ("id", "email", "display_name")} == {
        "id": named, "email": "ada@example.com", "display_name": "Ada L."}
    assert group[0]["creator_id"] == named


def call_as(url: str, user: str, email: str, call: str, *args: object) -> tuple[str | None, dict]:
    """One api call in its own transaction as `user`: (response.status, answer)."""
    with psycopg.connect(url) as conn:
        conn.execute("set local role authenticated")
        claims = {"sub": user, "role": "authenticated", "email": email}
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        row = conn.execute(f"select {call}, current_setting('response.status', true)",
                           args).fetchone()
    assert row is not None
    return row[1], row[0]


def test_unconfirmed_address_is_not_the_addressee(supabase_url: str) -> None:
    """On Supabase anyone may sign up with any address: until it is confirmed
    (auth.users.email_confirmed_at), an invite emailed to it is not theirs."""
    migrate(supabase_url)
    inviter = insert_auth_user(supabase_url, "ines@example.com", None)
    bea = insert_auth_user(supabase_url, "bea@example.com", None, confirmed=False)
    _, event = call_as(supabase_url, inviter, "ines@example.com",
                       "api.create_event(title => 'Cup', capacity => 4)")
    _, invite = call_as(supabase_url, inviter, "ines@example.com",
                        "api.create_pair_invite(%s, 'bea@example.com')", event["id"])
    _, joined = call_as(supabase_url, bea, "bea@example.com",
                        "api.join_pair_invite(%s)", invite["short_code"])
    status, refused = call_as(supabase_url, bea, "bea@example.com",
                              "api.accept_pair_invite(%s)", joined["token"])
    assert (status, refused) == ("403", {
        "code": "42501", "message": "This invitation was sent to another email address.",
        "details": "other_addressee", "hint": None})
    with psycopg.connect(supabase_url) as conn:
        conn.execute("update auth.users set email_confirmed_at = now() where id = %s", (bea,))
    status, accepted = call_as(supabase_url, bea, "bea@example.com",
                               "api.accept_pair_invite(%s)", joined["token"])
    assert status is None or status == "", accepted
    assert sorted(r["user_id"] for r in accepted["registrations"]) == sorted([inviter, bea])


@pytest.fixture
def as_supabase_postgres(database_url: str) -> Iterator[tuple[str, str]]:
    """On Supabase, `make migrate` connects as `postgres`, which is not a superuser: it owns
    the database, may use schema auth and has all privileges on auth.users, but may not
    create objects in schema auth. A role of that shape stands in for it here (without
    CREATEROLE and REPLICATION, which the migrations do not need). Gives (the database's URL
    as superuser, its URL as that role)."""
    suffix = uuid.uuid4().hex[:8]
    role, name = f"joinery_supa_pg_{suffix}", f"joinery_supa_{suffix}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login nosuperuser createdb bypassrls").format(
            sql.Identifier(role)))
    try:
        url = create_supabase_database(database_url, name, role)
        params = conninfo_to_dict(url)
        params["user"] = role
        yield url, make_conninfo(**params)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_migrate_as_supabase_postgres_role(as_supabase_postgres: tuple[str, str]) -> None:
    url, as_role = as_supabase_postgres
    with psycopg.connect(as_role) as conn:
        row = conn.execute("select rolsuper from pg_roles where rolname = current_user"
                           ).fetchone()
    assert row == (False,)
    before = fingerprint(url)
    count = len([p for p in (ROOT / "migrations").glob("0*.sql")
                 if not p.stem.endswith(".rollback")])

    assert migrate(as_role) == f"{count} migration(s) applied; sql/ rebuilt"

    assert fingerprint(url) == before
    assert [row[0] for row in auth_user_triggers(url)] == [OUR_TRIGGER, OUR_DELETE_TRIGGER]
    user_id = insert_auth_user(url, "linus@example.com", {"display_name": "Linus"})
    with psycopg.connect(url) as conn:
        profile = conn.execute("select display_name from app.profiles where id = %s",
                               (user_id,)).fetchone()
    assert profile == ("Linus",)
    assert migrate(as_role) == "0 migration(s) applied; sql/ unchanged"
    assert fingerprint(url) == before
