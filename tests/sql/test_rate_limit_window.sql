-- The limiter's fixed windows (issue 19, item 9): one counter per user (or
-- key) and bucket. Retry-After never exceeds the window (issue 18, item 6): a
-- transaction's now() is when it started, so a window opened by a transaction
-- that started later and took the row first opens after the caller's now();
-- "until the window closes" would come out longer than the window (61 s for
-- 60). The counters below stand for such transactions. A window closes when
-- its length has passed; private.rate_limit_prune deletes the counters of
-- closed windows, each by its own bucket's window.
begin;
select plan(9);

insert into auth.users (id, email) values
    ('d6000000-0000-4000-8000-000000000001', 'window-user@example.com'),
    ('d6000000-0000-4000-8000-000000000002', 'boundary-user@example.com');
insert into app.rate_limit_counters (user_id, bucket, window_start, hits) values
    ('d6000000-0000-4000-8000-000000000001', 'join_code', now() + interval '1.5 seconds', 10),
    (private.client_key('198.51.100.7'), 'stop_client', now() + interval '3 seconds', 30),
    ('d6000000-0000-4000-8000-000000000002', 'join_code', now() - interval '60 seconds', 10);

create temp table vars (name text primary key, value jsonb);
grant all on vars to anon, authenticated;

set local role authenticated;
select test_support.sign_in('d6000000-0000-4000-8000-000000000001');
insert into vars values ('join', test_support.attempt(
    $$api.join_group('d6100000-0000-4000-8000-000000000001')$$));
reset role;
select is(test_support.v('join') -> 'status', '"429"'::jsonb,
    'user: a window opened later, holding ten, is full');
select is(test_support.v('join') -> 'headers', '[{"Retry-After": "60"}]'::jsonb,
    'user: Retry-After is the whole window, not more');

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);
select set_config('request.client_addr', '198.51.100.7', true);
insert into vars values ('stop', test_support.attempt($$api.stop_invitations('x')$$));
reset role;
select is(test_support.v('stop') -> 'status', '"429"'::jsonb,
    'client address: a window opened later, holding thirty, is full');
select is(test_support.v('stop') -> 'headers', '[{"Retry-After": "600"}]'::jsonb,
    'client address: Retry-After is the whole window, not more');

-- A window that opened exactly its length ago has closed.
set local role authenticated;
select test_support.sign_in('d6000000-0000-4000-8000-000000000002');
insert into vars values ('boundary', test_support.attempt(
    $$api.join_group('d6100000-0000-4000-8000-000000000001')$$));
reset role;
select is(test_support.v('boundary') -> 'status', '"404"'::jsonb,
    'boundary: ten attempts in a window opened 60 s ago do not count');
select results_eq(
    $$select window_start = now(), hits from app.rate_limit_counters
      where user_id = 'd6000000-0000-4000-8000-000000000002'$$,
    $$values (true, 1)$$,
    'boundary: the attempt opened a new window in the same row');

-- The prune, each counter by its own bucket's window.
delete from app.rate_limit_counters;
insert into app.rate_limit_counters (user_id, bucket, window_start, hits) values
    ('d6000000-0000-4000-8000-000000000001', 'join_code', now() - interval '61 seconds', 3),
    ('d6000000-0000-4000-8000-000000000001', 'respond_invite', now() - interval '60 seconds', 1),
    ('d6000000-0000-4000-8000-000000000001', 'create_invite', now() - interval '2 minutes', 5),
    ('d6000000-0000-4000-8000-000000000001', 'invite_mail', now() - interval '2 days', 3),
    ('d6000000-0000-4000-8000-000000000002', 'join_code', now() - interval '59 seconds', 2),
    ('d6000000-0000-4000-8000-000000000002', 'invite_mail', now() - interval '23 hours', 1);
select is(private.rate_limit_prune(), 3::bigint,
    'prune: deletes the three counters whose window has closed');
select results_eq(
    $$select user_id, bucket from app.rate_limit_counters order by 1, 2$$,
    $$values ('d6000000-0000-4000-8000-000000000001'::uuid, 'create_invite'::text),
             ('d6000000-0000-4000-8000-000000000002', 'invite_mail'),
             ('d6000000-0000-4000-8000-000000000002', 'join_code')$$,
    'prune: a 60 s counter goes a minute after its window opened, an hour''s and a day''s stay until theirs close');
select is(private.rate_limit_prune(), 0::bigint, 'prune: then there is nothing to delete');

select * from finish();
rollback;
