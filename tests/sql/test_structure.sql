-- What the database promises about its own shape, whoever calls it: row-level
-- security on every table, every function with an empty search_path, no
-- function callable by PUBLIC or anon, no direct writes for signed-in users,
-- an append-only audit log, the Supabase roles, auth.uid() and new profiles.
begin;
select plan(28);

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

select ok(
    array['audit_log', 'group_invites', 'group_members', 'groups', 'profiles',
          'rate_limit_counters', 'rate_limits']::name[]
        <@ array(select c.relname from pg_catalog.pg_class c
                 where c.relnamespace = 'app'::regnamespace and c.relkind in ('r', 'p')),
    'schema app holds the tables of the foundation and of groups'
);

select is_empty(
    $$select c.relname from pg_catalog.pg_class c
      where c.relnamespace = 'app'::regnamespace and c.relkind in ('r', 'p')
        and not c.relrowsecurity$$,
    'every table in schema app has row-level security enabled'
);

select is_empty(
    $$select c.relname || ' ' || p.privilege
      from pg_catalog.pg_class c
      cross join unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) as p(privilege)
      where c.relnamespace = 'app'::regnamespace and c.relkind in ('r', 'p')
        and has_table_privilege('authenticated', c.oid, p.privilege)$$,
    'authenticated can neither insert, update, delete nor truncate any table in app'
);

select is_empty(
    $$select c.relname || ' ' || p.privilege
      from pg_catalog.pg_class c
      cross join unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) as p(privilege)
      where c.relnamespace = 'app'::regnamespace and c.relkind in ('r', 'p')
        and has_table_privilege('anon', c.oid, p.privilege)$$,
    'anon has no privilege on any table in app'
);

select ok(
    not has_schema_privilege('anon', 'app', 'USAGE'),
    'anon cannot even look into schema app'
);

select ok(
    not has_schema_privilege('anon', 'private', 'USAGE'),
    'anon cannot look into schema private either (its one function, api.stop_invitations, is a definer)'
);

-- ---------------------------------------------------------------------------
-- Functions
-- ---------------------------------------------------------------------------

select ok(
    (select count(*) from pg_catalog.pg_proc p
     where p.pronamespace in ('api'::regnamespace, 'private'::regnamespace) and p.prosecdef) >= 10,
    'api and private hold SECURITY DEFINER functions (the next check looks at something)'
);

-- pg_proc.proconfig stores `set search_path = ''` as the text search_path="".
select is_empty(
    $$select p.oid::regprocedure::text from pg_catalog.pg_proc p
      where p.pronamespace in ('api'::regnamespace, 'private'::regnamespace)
        and p.prosecdef
        and not coalesce('search_path=""' = any (p.proconfig), false)$$,
    'every SECURITY DEFINER function in api and private runs with search_path set to empty'
);

-- Supabase's linter (rule 0011) flags any function without a fixed path, definer or not.
select is_empty(
    $$select p.oid::regprocedure::text from pg_catalog.pg_proc p
      where p.pronamespace in ('api'::regnamespace, 'private'::regnamespace,
                               'app'::regnamespace)
        and not coalesce('search_path=""' = any (p.proconfig), false)$$,
    'every function in app, api and private, definer or not, sets search_path to empty'
);

-- A null proacl means the default privileges, which include EXECUTE for
-- PUBLIC; grantee 0 in aclexplode is PUBLIC.
select is_empty(
    $$select p.oid::regprocedure::text from pg_catalog.pg_proc p
      where p.pronamespace = 'api'::regnamespace
        and (p.proacl is null
             or exists (select from aclexplode(p.proacl) a
                        where a.grantee = 0 and a.privilege_type = 'EXECUTE'))$$,
    'no function in schema api is executable by PUBLIC'
);

select is_empty(
    $$select p.oid::regprocedure::text from pg_catalog.pg_proc p
      where p.pronamespace = 'private'::regnamespace
        and (p.proacl is null
             or exists (select from aclexplode(p.proacl) a
                        where a.grantee = 0 and a.privilege_type = 'EXECUTE'))$$,
    'no function in schema private is executable by PUBLIC'
);

select is_empty(
    $$select p.oid::regprocedure::text from pg_catalog.pg_proc p
      where p.pronamespace in ('api'::regnamespace, 'private'::regnamespace)
        and has_function_privilege('anon', p.oid, 'EXECUTE')
        and p.oid::regprocedure::text <> 'api.stop_invitations(text)'$$,
    'anon can execute no function in api or private but api.stop_invitations'
);

select ok(
    has_function_privilege('anon', 'api.stop_invitations(text)', 'EXECUTE'),
    'anon can stop invitations (from the link in a mail, without an account)'
);

select is_empty(
    $$select p.oid::regprocedure::text from pg_catalog.pg_proc p
      where p.pronamespace = 'api'::regnamespace
        and not has_function_privilege('authenticated', p.oid, 'EXECUTE')
        and p.proname !~ 'webhook'$$,
    'authenticated can execute every function in api but the webhook ones (service_role only)'
);

-- ---------------------------------------------------------------------------
-- The audit log is append-only, even for the superuser
-- ---------------------------------------------------------------------------

insert into app.audit_log (actor_id, action, outcome, status)
values ('00000000-0000-4000-8000-0000000000aa', 'test.structure', 'written', 200);

select throws_ok(
    $$update app.audit_log set outcome = 'rewritten' where action = 'test.structure'$$,
    '42501', 'The audit log is append-only.',
    'the superuser cannot update the audit log'
);

select throws_ok(
    $$delete from app.audit_log where action = 'test.structure'$$,
    '42501', 'The audit log is append-only.',
    'the superuser cannot delete from the audit log'
);

select throws_ok(
    $$truncate app.audit_log$$,
    '42501', 'The audit log is append-only.',
    'the superuser cannot truncate the audit log'
);

select results_eq(
    $$select outcome, status from app.audit_log where action = 'test.structure'$$,
    $$values ('written'::text, 200)$$,
    'the audit entry is unchanged after the refused changes'
);

-- ---------------------------------------------------------------------------
-- Roles
-- ---------------------------------------------------------------------------

select results_eq(
    $$select rolname, rolcanlogin, rolbypassrls, rolsuper
      from pg_catalog.pg_roles
      where rolname in ('anon', 'authenticated', 'service_role')
      order by rolname$$,
    $$values ('anon'::name, false, false, false),
             ('authenticated'::name, false, false, false),
             ('service_role'::name, false, true, false)$$,
    'anon, authenticated and service_role exist, are NOLOGIN; only service_role bypasses RLS'
);

select results_eq(
    $$select rolcanlogin, rolinherit, rolbypassrls, rolsuper
      from pg_catalog.pg_roles where rolname = 'authenticator'$$,
    $$values (true, false, false, false)$$,
    'authenticator is LOGIN NOINHERIT, neither superuser nor RLS-bypassing'
);

select results_eq(
    $$select r.rolname
      from pg_catalog.pg_auth_members m
      join pg_catalog.pg_roles r on r.oid = m.roleid
      join pg_catalog.pg_roles u on u.oid = m.member
      where u.rolname = 'authenticator' and r.rolname in ('anon', 'authenticated', 'service_role')
      order by r.rolname$$,
    $$values ('anon'::name), ('authenticated'::name), ('service_role'::name)$$,
    'authenticator is a member of anon, authenticated and service_role'
);

-- ---------------------------------------------------------------------------
-- auth.uid() and friends read the request's claims
-- ---------------------------------------------------------------------------

select is(auth.uid(), null, 'auth.uid() is null when no claims are set');

select set_config('request.jwt.claims',
    '{"sub":"00000000-0000-4000-8000-000000000011","role":"authenticated","email":"claims@example.com"}',
    true);

select is(auth.uid(), '00000000-0000-4000-8000-000000000011'::uuid,
    'auth.uid() reads sub from request.jwt.claims');

select is(auth.role() || ' ' || auth.email(), 'authenticated claims@example.com',
    'auth.role() and auth.email() read request.jwt.claims');

select set_config('request.jwt.claims', '', true);
select set_config('request.jwt.claim.sub', '00000000-0000-4000-8000-000000000012', true);

select is(auth.uid(), '00000000-0000-4000-8000-000000000012'::uuid,
    'auth.uid() reads the legacy request.jwt.claim.sub');

select set_config('request.jwt.claim.sub', '', true);

-- ---------------------------------------------------------------------------
-- A new account gets a profile
-- ---------------------------------------------------------------------------

insert into auth.users (id, email, raw_user_meta_data) values
    ('00000000-0000-4000-8000-000000000021', 'ada@example.com', '{"display_name": "Ada Lovelace"}'),
    ('00000000-0000-4000-8000-000000000022', 'grace.hopper@example.com', '{}'),
    ('00000000-0000-4000-8000-000000000023', 'alan@example.com', '{"display_name": "   "}');

select is(
    (select display_name from app.profiles where id = '00000000-0000-4000-8000-000000000021'),
    'Ada Lovelace',
    'a new account''s profile takes display_name from raw_user_meta_data'
);

select is(
    (select display_name from app.profiles where id = '00000000-0000-4000-8000-000000000022'),
    'grace.hopper',
    'without a display_name the profile takes the email''s local part'
);

select is(
    (select display_name from app.profiles where id = '00000000-0000-4000-8000-000000000023'),
    'alan',
    'a blank display_name counts as none: the email''s local part is used'
);

select * from finish();
rollback;
