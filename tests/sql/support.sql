-- Helpers shared by the pgTAP files (tests/sql/test_*.sql). tests/conftest.py
-- runs this file once per test session, after `create extension pgtap`, and
-- lets anon and authenticated use schema test_support. It is idempotent: run
-- it again and it replaces the functions.
--
-- The helpers read a test file's own temp tables by their unqualified names,
-- so they resolve to that session's pg_temp when called:
--   vars   (name text primary key, value jsonb)  values carried from one
--          statement to the next: name -> the JSON a call returned
--   people (name text primary key, id uuid)      the named actors, where the
--          file names them
-- Those tables do not exist here, hence no check of the bodies now.
-- Every helper returns a value: the test runner wants one from every select.

set check_function_bodies = off;

create schema if not exists test_support;

-- The stored value of a name.
create or replace function test_support.v(text) returns jsonb
language sql stable as $$ select value from vars where name = $1 $$;

-- The id of a stored object (group, event, invite, ...).
create or replace function test_support.id(text) returns uuid
language sql stable as $$ select (value ->> 'id')::uuid from vars where name = $1 $$;

-- The id of a named user.
create or replace function test_support.u(text) returns uuid
language sql stable as $$ select id from people where name = $1 $$;

-- The ids of several named users, in the order given.
create or replace function test_support.us(variadic text[]) returns uuid[]
language sql stable as $$
    select array_agg(p.id order by n.ord)
    from unnest($1) with ordinality n(name, ord) join people p on p.name = n.name
$$;

-- Signs in as a user (claims for this transaction only; the role is set with
-- `set local role` before or after); returns the claims.
create or replace function test_support.sign_in(uid text, email text default null) returns text
language sql as $$
    select set_config('request.jwt.claims',
        (jsonb_build_object('sub', uid, 'role', 'authenticated')
         || case when email is null then '{}'::jsonb
                 else jsonb_build_object('email', email) end)::text, true);
$$;

-- Signs in as the named user; returns a TAP comment, so the line it adds to
-- the output is a diagnostic.
create or replace function test_support.login(text) returns text
language sql as $$
    select test_support.sign_in(test_support.u($1)::text);
    select '# as ' || $1
$$;

-- Runs one call (an SQL expression returning json) and returns
-- {status, headers, body}: response.status and response.headers as the call
-- left them (null when it set none) and what it returned; or {raised:
-- SQLSTATE, message} when the call raised instead of answering.
create or replace function test_support.attempt(call text) returns jsonb
language plpgsql as $$
declare
    v_body jsonb;
begin
    perform set_config('response.status', '', true);
    perform set_config('response.headers', '', true);
    execute 'select (' || call || ')::jsonb' into v_body;
    return jsonb_build_object(
        'status', nullif(current_setting('response.status', true), ''),
        'headers', nullif(current_setting('response.headers', true), '')::jsonb,
        'body', v_body);
exception when others then
    return jsonb_build_object('raised', sqlstate, 'message', sqlerrm);
end;
$$;

-- "status code" of an attempt ('-' when no status was set); "raised SQLSTATE".
create or replace function test_support.sc(a jsonb) returns text
language sql immutable as $$
    select case when a ? 'raised' then 'raised ' || (a ->> 'raised')
                else concat_ws(' ', coalesce(a ->> 'status', '-'), a #>> '{body,code}') end
$$;

reset check_function_bodies;
