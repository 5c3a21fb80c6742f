-- Foundation: roles, a Supabase-compatible auth schema where none exists,
-- the schemas of the project, profiles, the audit log and the rate limiter.
-- depends:

-- Roles are cluster-wide and exist already on Supabase: create only the missing ones.
do $roles$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
    if not exists (
        select from pg_catalog.pg_auth_members m
        join pg_catalog.pg_roles r on r.oid = m.roleid
        join pg_catalog.pg_roles u on u.oid = m.member
        where u.rolname = 'authenticator' and r.rolname = 'service_role'
    ) then
        grant anon, authenticated, service_role to authenticator;
    end if;
end
$roles$;

-- Supabase's auth schema, where it is missing. On Supabase nothing here runs.
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

-- Checked first: on Supabase the migrating role may not create in schema auth,
-- and CREATE TABLE IF NOT EXISTS asks for that right before it looks.
do $users$
begin
    if to_regclass('auth.users') is null then
        create table auth.users (
            id uuid primary key default gen_random_uuid(),
            email text,
            raw_user_meta_data jsonb not null default '{}'::jsonb,
            created_at timestamptz not null default now(),
            updated_at timestamptz not null default now()
        );
    end if;
end
$users$;

do $auth$
begin
    -- Only our stand-in table gets RLS here; Supabase manages its own.
    if not exists (select from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                   where n.nspname = 'auth' and p.proname = 'uid') then
        alter table auth.users enable row level security;
        create unique index if not exists users_email_key on auth.users (lower(email));

        -- The same reading of the request's claims as Supabase's functions:
        -- the legacy per-claim settings first, then request.jwt.claims.
        create function auth.jwt() returns jsonb language sql stable as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')
            )::jsonb
        $f$;
        create function auth.uid() returns uuid language sql stable as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim.sub', true), ''),
                (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
            )::uuid
        $f$;
        create function auth.role() returns text language sql stable as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim.role', true), ''),
                (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
            )::text
        $f$;
        create function auth.email() returns text language sql stable as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim.email', true), ''),
                (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
            )::text
        $f$;
        grant execute on function auth.jwt(), auth.uid(), auth.role(), auth.email()
            to anon, authenticated, service_role;
    end if;
end
$auth$;

-- app: tables. api: the callable functions. private: helpers that are not API.
create schema app;
create schema api;
create schema private;
grant usage on schema api to anon, authenticated, service_role;
grant usage on schema app to authenticated, service_role;
grant usage on schema private to anon, authenticated, service_role;

-- Functions are not executable by PUBLIC: every rebuild of sql/ revokes EXECUTE
-- from PUBLIC on all functions of api and private before it commits, and grants
-- them one by one. (A global ALTER DEFAULT PRIVILEGES would also strip PUBLIC from
-- every function the migrating role ever creates elsewhere in a shared database,
-- Supabase's included; a per-schema one cannot revoke what PUBLIC gets globally.)

create table app.profiles (
    id uuid primary key references auth.users (id) on delete cascade,
    display_name text not null check (char_length(display_name) between 1 and 80),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
alter table app.profiles enable row level security;

-- Append-only: a trigger (sql/functions/00_core.sql) refuses updates and deletes.
-- actor_id has no foreign key so that entries outlive deleted accounts.
create table app.audit_log (
    id bigint generated always as identity primary key,
    actor_id uuid,
    action text not null,
    outcome text not null,
    status integer not null,
    subject_id uuid,
    details jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now()
);
create index audit_log_actor_id_created_at_idx on app.audit_log (actor_id, created_at);
create index audit_log_subject_id_idx on app.audit_log (subject_id) where subject_id is not null;
alter table app.audit_log enable row level security;

-- Per-user sliding-window limits; operators change the numbers here.
create table app.rate_limits (
    bucket text primary key,
    max_attempts integer not null check (max_attempts > 0),
    window_seconds integer not null check (window_seconds > 0),
    description text not null default '',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
alter table app.rate_limits enable row level security;
insert into app.rate_limits (bucket, max_attempts, window_seconds, description) values
    ('join_code', 10, 60, 'joining or previewing by code: group invites and pair invites'),
    ('create_invite', 30, 3600, 'creating group invites and pair invites'),
    ('respond_invite', 20, 60, 'accepting or declining pair invites');

-- One row per counted attempt; rows older than their window are pruned as the
-- limiter runs.
create table app.rate_limit_hits (
    id bigint generated always as identity primary key,
    user_id uuid not null,
    bucket text not null,
    created_at timestamptz not null default now()
);
create index rate_limit_hits_user_bucket_created_idx
    on app.rate_limit_hits (user_id, bucket, created_at);
alter table app.rate_limit_hits enable row level security;
