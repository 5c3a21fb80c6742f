-- Abuse limits and the audit log (contract section 3, "Abuse limits"): per
-- user fixed windows read from app.rate_limits, failed attempts counted,
-- 429 with Retry-After over the limit, and one audit row per join attempt
-- that never holds the code. The whole file is one transaction, so now() is
-- the same for every attempt: every window opened here opens at that instant.
begin;
select plan(23);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

insert into auth.users (id, email) values
    ('00000000-0000-4000-8000-000000000001', 'guesser@example.com'),
    ('00000000-0000-4000-8000-000000000002', 'neighbour@example.com'),
    ('00000000-0000-4000-8000-000000000003', 'owner@example.com'),
    ('00000000-0000-4000-8000-000000000004', 'returning@example.com');

-- Well-formed codes that lead nowhere, in the order they are tried.
create temp table tried (n integer primary key, code text not null);
insert into tried select n, gen_random_uuid()::text from generate_series(1, 20) n;
grant select on tried to authenticated;

-- Values carried from one statement to the next.
create temp table vars (name text primary key, value jsonb);
grant all on vars to authenticated;

-- A join attempt with the n-th tried code.
create function pg_temp.try_code(n integer) returns jsonb
language sql as $$
    select test_support.attempt(format('api.join_group(%L)', (select code from tried where tried.n = $1)))
$$;

grant execute on function pg_temp.try_code(integer) to authenticated;

select results_eq(
    $$select bucket, max_attempts, window_seconds from app.rate_limits
      where bucket in ('join_code', 'create_invite', 'respond_invite') order by bucket$$,
    $$values ('create_invite'::text, 30, 3600), ('join_code', 10, 60), ('respond_invite', 20, 60)$$,
    'the limits start at the contract''s numbers: 10 joins a minute, 30 invites an hour, 20 answers a minute'
);

-- The owner makes a group and a code that the others try to join with.
set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000003');

insert into vars values ('group', api.create_group('Limited club'));
insert into vars values ('invite', api.create_group_invite(test_support.id('group')));

-- ---------------------------------------------------------------------------
-- Guesser: ten wrong codes, then refused, even with the right code
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000001');

insert into vars
select 'first_ten', jsonb_agg(pg_temp.try_code(t.n))
from (select n from tried where n <= 10 order by n) t;

select is(
    (select array_agg(concat_ws(' ', e ->> 'status', e #>> '{body,code}', e #>> '{body,details}'))
     from jsonb_array_elements(test_support.v('first_ten')) e),
    array_fill('404 PT404 not_found'::text, array[10]),
    'guesser: ten unknown codes are each answered 404 not_found'
);

insert into vars select 'eleventh', pg_temp.try_code(11);

select is(
    jsonb_build_object('status', test_support.v('eleventh') -> 'status',
                       'code', test_support.v('eleventh') #> '{body,code}'),
    '{"status": "429", "code": "PT429"}'::jsonb,
    'guesser: the eleventh attempt within a minute is answered 429 (status set, nothing raised)'
);

select is(
    (select case when jsonb_typeof(h) = 'array' and jsonb_typeof(h -> 0) = 'object'
                 then format('array of %s, keys %s', jsonb_array_length(h),
                             (select string_agg(k, ',') from jsonb_object_keys(h -> 0) k))
                 else coalesce(jsonb_typeof(h), 'no headers') end
     from (select test_support.v('eleventh') -> 'headers' as h) x),
    'array of 1, keys Retry-After',
    'guesser: the 429 sets response.headers to [{"Retry-After": ...}]'
);

select ok(
    (select case when r ~ '^[0-9]{1,9}$' then r::integer between 1 and 60 else false end
     from (select test_support.v('eleventh') #>> '{headers,0,Retry-After}' as r) x),
    'guesser: Retry-After is a number of seconds between 1 and 60'
);

select is(
    (select jsonb_build_object('status', a -> 'status', 'code', a #> '{body,code}')
     from test_support.attempt(format('api.join_group(%L)', test_support.v('invite') ->> 'code')) a),
    '{"status": "429", "code": "PT429"}'::jsonb,
    'guesser: the right code on the twelfth attempt is still answered 429'
);

reset role;

select results_eq(
    format($$select (select count(*) from app.group_members
                     where group_id = %1$L and user_id = '00000000-0000-4000-8000-000000000001'),
                    (select use_count from app.group_invites where group_id = %1$L)$$,
           test_support.v('group') ->> 'id'),
    $$values (0::bigint, 0)$$,
    'the refused right code neither joined the guesser nor used the invite'
);

select is(
    (select hits from app.rate_limit_counters
     where user_id = '00000000-0000-4000-8000-000000000001' and bucket = 'join_code'),
    10,
    'refused attempts are not counted: the guesser''s counter holds ten'
);

-- ---------------------------------------------------------------------------
-- Neighbour: another user is not affected
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000002');

select is(
    (select jsonb_build_object('status', a -> 'status', 'user_id', a #> '{body,membership,user_id}')
     from test_support.attempt(format('api.join_group(%L)', test_support.v('invite') ->> 'code')) a),
    '{"status": null, "user_id": "00000000-0000-4000-8000-000000000002"}'::jsonb,
    'neighbour: joins with the right code while the guesser is limited'
);

reset role;

-- ---------------------------------------------------------------------------
-- The audit log
-- ---------------------------------------------------------------------------

select results_eq(
    $$select outcome, status, count(*) from app.audit_log
      where actor_id = '00000000-0000-4000-8000-000000000001' and action = 'group.join'
      group by outcome, status order by outcome$$,
    $$values ('not_found'::text, 404, 10::bigint), ('rate_limited', 429, 1::bigint)$$,
    'the guesser''s attempts are audited: ten not_found (404) rows, one rate_limited (429) row for the window'
);

select is(
    (select count(*) from app.audit_log where actor_id = '00000000-0000-4000-8000-000000000001'),
    11::bigint,
    'the guesser has eleven audit rows: one per allowed attempt, one for the refused ones'
);

select results_eq(
    $$select action, outcome, refused, window_start = to_timestamp(floor(extract(epoch from now()) / 60) * 60)
      from app.audit_refusals where actor_id = '00000000-0000-4000-8000-000000000001'$$,
    $$values ('group.join'::text, 'rate_limited'::text, 2, true)$$,
    'the two refused attempts are counted in one app.audit_refusals row for the one-minute window'
);

select results_eq(
    $$select action, outcome, status, subject_id::text from app.audit_log
      where actor_id = '00000000-0000-4000-8000-000000000002'$$,
    format($$values ('group.join'::text, 'joined'::text, 200, %L)$$, test_support.v('invite') ->> 'id'),
    'the neighbour''s successful join is audited with the invite as subject'
);

-- ---------------------------------------------------------------------------
-- The operator lowers the limit
-- ---------------------------------------------------------------------------

update app.rate_limits set max_attempts = 3 where bucket = 'join_code';

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000002');

-- The neighbour has one attempt in the window: two more are allowed, not nine.
select is(
    (select array_agg(r ->> 'status')
     from (select pg_temp.try_code(t.n) as r
           from (select n from tried where n between 12 and 14 order by n) t) x),
    array['404', '404', '429'],
    'neighbour: with max_attempts lowered to 3, the fourth attempt is answered 429'
);

-- ---------------------------------------------------------------------------
-- Returning user: a closed window does not count
-- ---------------------------------------------------------------------------

reset role;

-- Twenty attempts in a window that opened two minutes ago (closed a minute
-- ago), and one create_invite attempt as old (its hour still open).
insert into app.rate_limit_counters (user_id, bucket, window_start, hits) values
    ('00000000-0000-4000-8000-000000000004', 'join_code', now() - interval '2 minutes', 20),
    ('00000000-0000-4000-8000-000000000004', 'create_invite', now() - interval '2 minutes', 1);

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000004');

select is(
    pg_temp.try_code(15) ->> 'status',
    '404',
    'returning: twenty attempts of a window that has closed do not count; the attempt is allowed'
);

reset role;

select results_eq(
    $$select window_start = now(), hits from app.rate_limit_counters
      where user_id = '00000000-0000-4000-8000-000000000004' and bucket = 'join_code'$$,
    $$values (true, 1)$$,
    'returning: the same row now counts a window that opened with this attempt, holding one'
);

select results_eq(
    $$select window_start = now() - interval '2 minutes', hits from app.rate_limit_counters
      where user_id = '00000000-0000-4000-8000-000000000004' and bucket = 'create_invite'$$,
    $$values (true, 1)$$,
    'returning: a new join_code window leaves the other buckets alone'
);

-- The window opened 30 seconds ago and holds three attempts (the limit,
-- lowered to 3 above).
update app.rate_limit_counters set window_start = now() - interval '30 seconds', hits = 3
where user_id = '00000000-0000-4000-8000-000000000004' and bucket = 'join_code';

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000004');

select is(
    pg_temp.try_code(16) - 'body',
    '{"status": "429", "headers": [{"Retry-After": "30"}]}'::jsonb,
    'returning: the fourth attempt is answered 429 with Retry-After 30 (when the window closes)'
);

reset role;

select results_eq(
    $$select action, outcome, status from app.audit_log
      where actor_id = '00000000-0000-4000-8000-000000000004' order by id$$,
    $$values ('group.join'::text, 'not_found'::text, 404), ('group.join', 'rate_limited', 429)$$,
    'returning: both attempts are audited, the allowed one and the refused one'
);

-- ---------------------------------------------------------------------------
-- Owner: 30 invites an hour
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000003');

-- One invite was made above; 29 more fill the hour's allowance.
select is(
    (select count(*) from generate_series(1, 29)
     where api.create_group_invite(test_support.id('group')) ? 'code'),
    29::bigint,
    'owner: thirty invites within the hour are created'
);

select is(
    (select jsonb_build_object('status', a -> 'status', 'code', a #> '{body,code}', 'headers', a -> 'headers')
     from test_support.attempt(format('api.create_group_invite(%L)', test_support.v('group') ->> 'id')) a),
    '{"status": "429", "code": "PT429", "headers": [{"Retry-After": "3600"}]}'::jsonb,
    'owner: the thirty-first invite within the hour is answered 429 with Retry-After'
);

reset role;

select results_eq(
    $$select outcome, status, count(*) from app.audit_log
      where actor_id = '00000000-0000-4000-8000-000000000003' and action = 'group_invite.create'
      group by outcome, status order by outcome$$,
    $$values ('created'::text, 201, 30::bigint), ('rate_limited', 429, 1::bigint)$$,
    'every invite creation attempt is audited: thirty created, one rate_limited'
);

select is_empty(
    $$select a.id from app.audit_log a
      where exists (select from tried t where to_jsonb(a)::text ilike '%' || t.code || '%')
         or to_jsonb(a)::text ilike '%' || (test_support.v('invite') ->> 'code') || '%'$$,
    'no audit row holds an invite code, right or wrong, in any column'
);

select * from finish();
rollback;
