-- The mail outbox's worker side (contract section 5) and the abuse limits of
-- the pair flow (contract section 3, "Abuse limits"). Workers act as
-- service_role: private.mail_claim() takes the oldest due unsent message,
-- private.mail_sent / private.mail_failed record the outcome, with backoff
-- 2^attempts seconds capped at max_backoff. Nobody else can touch the outbox.
-- Then: 30 pair invites an hour, joins by code (groups and pairs) sharing one
-- bucket of 10 a minute, accepts and declines sharing 20 a minute, and an
-- audit row per attempt holding no code or token.
--
-- One transaction: now() is frozen, so send_after - now() is exact and every
-- rate-limit hit made here shares one timestamp.
begin;
select plan(34);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

-- Only this file's messages are in the outbox while it runs (rolled back).
delete from app.mail_outbox;

insert into app.mail_outbox (id, to_email, template, data, attempts, send_after, sent_at) values
    -- Older than everything, but already sent: never claimed again.
    ('c0000000-0000-4000-8000-000000000000', 'done@example.com', 'pair_invite', '{"n": 0}', 1,
     now() - interval '1 day', now() - interval '23 hours'),
    ('c0000000-0000-4000-8000-000000000001', 'first@example.com', 'pair_invite', '{"n": 1}', 0,
     now() - interval '10 minutes', null),
    ('c0000000-0000-4000-8000-000000000002', 'second@example.com', 'pair_invite', '{"n": 2}', 2,
     now() - interval '1 minute', null),
    -- Not due yet.
    ('c0000000-0000-4000-8000-000000000003', 'later@example.com', 'pair_invite', '{"n": 3}', 0,
     now() + interval '1 second', null),
    -- For the backoff: not due, with 0, 3, 10 and 10 failed attempts so far.
    ('c0000000-0000-4000-8000-000000000010', 'fail0@example.com', 'pair_invite', '{}', 0,
     now() + interval '1 day', null),
    ('c0000000-0000-4000-8000-000000000013', 'fail3@example.com', 'pair_invite', '{}', 3,
     now() + interval '1 day', null),
    ('c0000000-0000-4000-8000-000000000020', 'fail10@example.com', 'pair_invite', '{}', 10,
     now() + interval '1 day', null),
    ('c0000000-0000-4000-8000-000000000021', 'fail10b@example.com', 'pair_invite', '{}', 10,
     now() + interval '1 day', null);

insert into auth.users (id, email) values
    ('d0000000-0000-4000-8000-000000000001', 'prolific@example.com'),
    ('d0000000-0000-4000-8000-000000000002', 'joiner@example.com'),
    ('d0000000-0000-4000-8000-000000000003', 'responder@example.com'),
    ('d0000000-0000-4000-8000-000000000009', 'organizer@example.com');

insert into app.events (id, creator_id, title) values
    ('d1000000-0000-4000-8000-000000000001', 'd0000000-0000-4000-8000-000000000009', 'Busy Cup');

-- Values carried from one statement to the next.
create temp table vars (name text primary key, value jsonb);
grant all on vars to authenticated;

-- ---------------------------------------------------------------------------
-- Worker (service_role): claim, sent, failed
-- ---------------------------------------------------------------------------

set local role service_role;
select set_config('request.jwt.claims', '{"role":"service_role"}', true);

select results_eq(
    'select id, to_email, template, data, attempts from private.mail_claim()',
    $$values ('c0000000-0000-4000-8000-000000000001'::uuid, 'first@example.com'::text, 'pair_invite'::text,
              '{"n": 1}'::jsonb, 0)$$,
    'worker: mail_claim returns the oldest due unsent message'
);

select lives_ok(
    $$select private.mail_sent('c0000000-0000-4000-8000-000000000001')$$,
    'worker: marks it sent'
);

select results_eq(
    $$select sent_at, attempts, last_error from app.mail_outbox where id = 'c0000000-0000-4000-8000-000000000001'$$,
    $$values (now(), 1, null::text)$$,
    'worker: the sent message has sent_at now and one attempt'
);

select results_eq(
    'select id, attempts from private.mail_claim()',
    $$values ('c0000000-0000-4000-8000-000000000002'::uuid, 2)$$,
    'worker: the next claim returns the next due message'
);

select lives_ok(
    $$select private.mail_sent('c0000000-0000-4000-8000-000000000002')$$,
    'worker: marks that one sent too'
);

select is_empty(
    'select id from private.mail_claim()',
    'worker: with nothing else due, mail_claim returns nothing (the future message is not claimed)'
);

select results_eq(
    $$select count(*) filter (where sent_at is null), count(*) filter (where sent_at is not null)
      from app.mail_outbox$$,
    $$values (5::bigint, 3::bigint)$$,
    'worker: five messages wait (one due in a second, four backing off), three are sent'
);

select lives_ok(
    $$select private.mail_failed('c0000000-0000-4000-8000-000000000010', 'connection refused'),
             private.mail_failed('c0000000-0000-4000-8000-000000000013', 'connection refused'),
             private.mail_failed('c0000000-0000-4000-8000-000000000020', 'connection refused', 60),
             private.mail_failed('c0000000-0000-4000-8000-000000000021', 'connection refused')$$,
    'worker: records four failed deliveries'
);

reset role;

select results_eq(
    $$select id, attempts, last_error, send_after - now(), sent_at from app.mail_outbox
      where id in ('c0000000-0000-4000-8000-000000000010', 'c0000000-0000-4000-8000-000000000013',
                   'c0000000-0000-4000-8000-000000000020', 'c0000000-0000-4000-8000-000000000021')
      order by id$$,
    $$values ('c0000000-0000-4000-8000-000000000010'::uuid, 1, 'connection refused'::text, interval '1 second', null::timestamptz),
             ('c0000000-0000-4000-8000-000000000013', 4, 'connection refused', interval '8 seconds', null),
             ('c0000000-0000-4000-8000-000000000020', 11, 'connection refused', interval '60 seconds', null),
             ('c0000000-0000-4000-8000-000000000021', 11, 'connection refused', interval '300 seconds', null)$$,
    'worker: a failure records the error, counts the attempt and waits 2^attempts s (0: 1 s, 3: 8 s), capped (60 given; 300 by default)'
);

-- ---------------------------------------------------------------------------
-- Signed-in users and anonymous: no access to the outbox
-- ---------------------------------------------------------------------------

select test_support.sign_in('d0000000-0000-4000-8000-000000000001');
set local role authenticated;

select throws_ok('select * from private.mail_claim()', '42501', null,
    'authenticated: cannot execute mail_claim');
select throws_ok($$select private.mail_sent('c0000000-0000-4000-8000-000000000003')$$, '42501', null,
    'authenticated: cannot execute mail_sent');
select throws_ok($$select private.mail_failed('c0000000-0000-4000-8000-000000000003', 'x')$$, '42501', null,
    'authenticated: cannot execute mail_failed');
select throws_ok('select count(*) from app.mail_outbox', '42501', null,
    'authenticated: cannot select app.mail_outbox');

reset role;
set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select throws_ok('select * from private.mail_claim()', '42501', null,
    'anon: cannot execute mail_claim');
select throws_ok($$select private.mail_sent('c0000000-0000-4000-8000-000000000003')$$, '42501', null,
    'anon: cannot execute mail_sent');
select throws_ok($$select private.mail_failed('c0000000-0000-4000-8000-000000000003', 'x')$$, '42501', null,
    'anon: cannot execute mail_failed');
select throws_ok('select count(*) from app.mail_outbox', '42501', null,
    'anon: cannot select app.mail_outbox');

reset role;

select results_eq(
    $$select attempts, send_after - now(), sent_at from app.mail_outbox where id = 'c0000000-0000-4000-8000-000000000003'$$,
    $$values (0, interval '1 second', null::timestamptz)$$,
    'the refused calls changed nothing'
);

-- ---------------------------------------------------------------------------
-- Prolific inviter: 30 pair invites an hour
-- ---------------------------------------------------------------------------

select test_support.sign_in('d0000000-0000-4000-8000-000000000001');
set local role authenticated;

-- Each invite revokes the previous one: one event suffices.
insert into vars
select 'create' || n, test_support.attempt($$api.create_pair_invite('d1000000-0000-4000-8000-000000000001')$$)
from generate_series(1, 30) n;

select is(
    (select count(*) from vars
     where name like 'create%' and test_support.sc(value) = '-' and value #>> '{body,short_code}' ~ '^[2-9A-HJKMNP-Z]{8}$'),
    30::bigint,
    'prolific: thirty invites within the hour are created'
);

insert into vars values ('create31', test_support.attempt($$api.create_pair_invite('d1000000-0000-4000-8000-000000000001')$$));

select is(
    test_support.v('create31') - 'body' || jsonb_build_object('code', test_support.v('create31') #> '{body,code}'),
    '{"status": "429", "headers": [{"Retry-After": "3600"}], "code": "PT429"}'::jsonb,
    'prolific: the thirty-first is answered 429 with Retry-After 3600 (when the first leaves the hour)'
);

reset role;

select results_eq(
    $$select status, count(*) from app.pair_invites
      where inviter_id = 'd0000000-0000-4000-8000-000000000001' group by status order by status$$,
    $$values ('revoked'::text, 29::bigint), ('sent', 1::bigint)$$,
    'prolific: thirty invites exist (the last open, 29 revoked by their successors); the refused one made none'
);

-- ---------------------------------------------------------------------------
-- Joiner: group codes and pair codes count in one bucket, 10 a minute
-- ---------------------------------------------------------------------------

select test_support.sign_in('d0000000-0000-4000-8000-000000000002');
set local role authenticated;

insert into vars
select 'gjoin' || n, test_support.attempt(format('api.join_group(%L)', gen_random_uuid()))
from generate_series(1, 5) n;

insert into vars
select 'pjoin' || n, test_support.attempt(format('api.join_pair_invite(%L)', 'QQQQ' || n || n || n || n))
from generate_series(2, 5) n;

insert into vars values ('pjoin_ok', test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('create30') #>> '{body,short_code}')));

select is(
    (select array_agg(test_support.sc(value) order by name collate "C") from vars where name like 'gjoin%' or name like 'pjoin%'),
    array['404 PT404', '404 PT404', '404 PT404', '404 PT404', '404 PT404',
          '404 PT404', '404 PT404', '404 PT404', '404 PT404', '-'],
    'joiner: five group codes and four pair codes that lead nowhere (404), then the right pair code (token)'
);

select is(
    test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('create30') #>> '{body,short_code}')) - 'body',
    '{"status": "429", "headers": [{"Retry-After": "60"}]}'::jsonb,
    'joiner: the eleventh attempt, a pair code (the right one), is answered 429 with Retry-After 60'
);

select is(
    test_support.attempt(format('api.join_group(%L)', gen_random_uuid())) - 'body',
    '{"status": "429", "headers": [{"Retry-After": "60"}]}'::jsonb,
    'joiner: a group code is refused as well: one bucket for both'
);

reset role;

select is(
    (select hits from app.rate_limit_counters
     where user_id = 'd0000000-0000-4000-8000-000000000002' and bucket = 'join_code'),
    10,
    'joiner: ten hits in the join_code bucket, the refused attempts not counted'
);

-- ---------------------------------------------------------------------------
-- Responder: accepts and declines count in one bucket, 20 a minute
-- ---------------------------------------------------------------------------

select test_support.sign_in('d0000000-0000-4000-8000-000000000003');
set local role authenticated;

insert into vars
select 'accept' || lpad(n::text, 2, '0'), test_support.attempt(format('api.accept_pair_invite(%L)', 'no-such-token-' || n))
from generate_series(1, 10) n;

insert into vars
select 'decline' || lpad(n::text, 2, '0'), test_support.attempt(format('api.decline_pair_invite(%L)', 'no-such-token-' || n))
from generate_series(1, 10) n;

select is(
    (select array_agg(test_support.sc(value)) from vars where name ~ '^(accept|decline)[0-9]{2}$'),
    array_fill('404 PT404'::text, array[20]),
    'responder: ten accepts and ten declines with unknown tokens are each answered 404'
);

select is(
    test_support.attempt($$api.accept_pair_invite('no-such-token-21')$$) - 'body',
    '{"status": "429", "headers": [{"Retry-After": "60"}]}'::jsonb,
    'responder: the twenty-first answer, an accept, is answered 429 with Retry-After 60'
);

select is(
    test_support.attempt($$api.decline_pair_invite('no-such-token-22')$$) - 'body',
    '{"status": "429", "headers": [{"Retry-After": "60"}]}'::jsonb,
    'responder: a decline is refused as well: one bucket for both'
);

-- The limit is per user: the responder still joins by code.
insert into vars values ('rjoin', test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('create30') #>> '{body,short_code}')));

select is(
    test_support.sc(test_support.v('rjoin')) || ' ' || (length(test_support.v('rjoin') #>> '{body,token}') >= 43),
    '- true',
    'responder: joining by code (another bucket) is still allowed'
);

reset role;

-- ---------------------------------------------------------------------------
-- The audit log (as the superuser)
-- ---------------------------------------------------------------------------

select results_eq(
    $$select action, outcome, status, count(*) from app.audit_log
      where actor_id = 'd0000000-0000-4000-8000-000000000001'
      group by action, outcome, status order by action, outcome$$,
    $$values ('pair_invite.create'::text, 'created'::text, 200, 30::bigint),
             ('pair_invite.create', 'rate_limited', 429, 1::bigint)$$,
    'audit: each of the prolific inviter''s 31 attempts has its row'
);

select results_eq(
    $$select action, outcome, status, count(*) from app.audit_log
      where actor_id = 'd0000000-0000-4000-8000-000000000002'
      group by action, outcome, status order by action, outcome$$,
    $$values ('group.join'::text, 'not_found'::text, 404, 5::bigint),
             ('group.join', 'rate_limited', 429, 1::bigint),
             ('pair_invite.join', 'not_found', 404, 4::bigint),
             ('pair_invite.join', 'rate_limited', 429, 1::bigint),
             ('pair_invite.join', 'token_issued', 200, 1::bigint)$$,
    'audit: each of the joiner''s 12 attempts has its row, refused ones included'
);

select results_eq(
    $$select action, outcome, status, count(*) from app.audit_log
      where actor_id = 'd0000000-0000-4000-8000-000000000003'
      group by action, outcome, status order by action, outcome$$,
    $$values ('pair_invite.accept'::text, 'not_found'::text, 404, 10::bigint),
             ('pair_invite.accept', 'rate_limited', 429, 1::bigint),
             ('pair_invite.decline', 'not_found', 404, 10::bigint),
             ('pair_invite.decline', 'rate_limited', 429, 1::bigint),
             ('pair_invite.join', 'token_issued', 200, 1::bigint)$$,
    'audit: each of the responder''s 23 attempts has its row, refused ones included'
);

select results_eq(
    $$select count(value #>> '{body,short_code}'), count(value #>> '{body,token}') from vars$$,
    $$values (30::bigint, 2::bigint)$$,
    'audit: the check below looks for 30 short codes and 2 tokens handed out in this file'
);

select is_empty(
    $$select a.id from app.audit_log a, vars v
      where strpos(to_jsonb(a)::text, v.value #>> '{body,short_code}') > 0
         or strpos(to_jsonb(a)::text, v.value #>> '{body,token}') > 0$$,
    'audit: no row holds a short code or a token'
);

select * from finish();
rollback;
