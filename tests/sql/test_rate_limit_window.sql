-- Retry-After never exceeds the window (issue 18, item 6). The limiter counts
-- under a lock per user and bucket, but a transaction's now() is when it
-- started: a hit written by a transaction that started later and took the lock
-- first is younger than the caller's now(), and "until the oldest hit leaves
-- the window" came out longer than the window (61 s for 60). The hits below
-- stand for such transactions.
begin;
select plan(4);

insert into auth.users (id, email) values
    ('d6000000-0000-4000-8000-000000000001', 'window-user@example.com');
insert into app.rate_limit_hits (user_id, bucket, created_at)
select 'd6000000-0000-4000-8000-000000000001', 'join_code', now() + interval '1.5 seconds'
from generate_series(1, 10);
insert into app.rate_limit_hits (user_id, bucket, created_at)
select private.client_key('198.51.100.7'), 'stop_client', now() + interval '3 seconds'
from generate_series(1, 30);

create temp table vars (name text primary key, value jsonb);
grant all on vars to anon, authenticated;

set local role authenticated;
select test_support.sign_in('d6000000-0000-4000-8000-000000000001');
insert into vars values ('join', test_support.attempt(
    $$api.join_group('d6100000-0000-4000-8000-000000000001')$$));
reset role;
select is(test_support.v('join') -> 'status', '"429"'::jsonb,
    'user: ten younger hits fill the window');
select is(test_support.v('join') -> 'headers', '[{"Retry-After": "60"}]'::jsonb,
    'user: Retry-After is the whole window, not more');

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);
select set_config('request.client_addr', '198.51.100.7', true);
insert into vars values ('stop', test_support.attempt($$api.stop_invitations('x')$$));
reset role;
select is(test_support.v('stop') -> 'status', '"429"'::jsonb,
    'client address: thirty younger hits fill the window');
select is(test_support.v('stop') -> 'headers', '[{"Retry-After": "600"}]'::jsonb,
    'client address: Retry-After is the whole window, not more');

select * from finish();
rollback;
