-- Webhooks (contract section 8): who may manage endpoints (service_role only),
-- that no API role reads the tables that hold the signing secrets, the outbox
-- fan-out, the lease, the specification's retry schedule (5 s, 5 min, 30 min,
-- 2 h, 5 h, 10 h, 10 h, then failed), and disabling an endpoint that has
-- failed for too long, with its audit row.
--
-- One transaction: now() is frozen, so next_attempt_at - now() is exact.
begin;
select plan(63);

-- Only this file's endpoints exist while it runs (rolled back).
delete from app.webhook_endpoints;
delete from app.webhook_events;

-- ---------------------------------------------------------------------------
-- Permissions
-- ---------------------------------------------------------------------------

select ok(not has_function_privilege('anon', f, 'execute')
          and not has_function_privilege('authenticated', f, 'execute')
          and has_function_privilege('service_role', f, 'execute'),
          f || ': service_role only')
from unnest(array[
    'api.create_webhook_endpoint(text, text[], text, boolean)',
    'api.update_webhook_endpoint(uuid, text, text[], text, boolean, boolean)',
    'api.delete_webhook_endpoint(uuid)',
    'api.rotate_webhook_secret(uuid)',
    'api.webhook_deliveries(uuid, text, uuid, integer)',
    'api.replay_webhook(uuid)',
    'private.webhook_claim(integer, integer)',
    'private.webhook_done(uuid, uuid, integer, integer, text, text, double precision, double precision)',
    'private.webhook_pending_count()',
    'private.webhook_failed_count()']) f;

select ok(not has_function_privilege(r, 'private.webhook_event(text, jsonb, jsonb)', 'execute'),
          r || ' cannot write events itself')
from unnest(array['anon', 'authenticated', 'service_role']) r;

select ok(not has_table_privilege(r, t, 'select, insert, update, delete'),
          r || ' has no privilege on ' || t)
from unnest(array['anon', 'authenticated', 'service_role']) r,
     unnest(array['app.webhook_endpoints', 'app.webhook_events', 'app.webhook_deliveries',
                  'app.webhook_attempts']) t
where r = 'service_role' or t = 'app.webhook_endpoints';

select ok(bool_and(c.relrowsecurity), 'row level security on every webhook table')
from pg_class c where c.oid in ('app.webhook_endpoints'::regclass, 'app.webhook_events'::regclass,
    'app.webhook_deliveries'::regclass, 'app.webhook_attempts'::regclass);

-- ---------------------------------------------------------------------------
-- Endpoints (as service_role)
-- ---------------------------------------------------------------------------

create temp table vars (name text primary key, value jsonb);
grant all on vars to service_role;

set local role service_role;
insert into vars values
    ('one', api.create_webhook_endpoint('https://hooks.example.com/a',
        array['like_group.approved', 'pair_invite.sent'], 'first')),
    ('two', api.create_webhook_endpoint('https://hooks.example.com/b',
        array['like_group.approved'])),
    ('off', api.create_webhook_endpoint('https://hooks.example.com/c',
        array['like_group.approved']));
select is(test_support.v('off') -> 'enabled', 'true'::jsonb, 'a new endpoint is enabled');
select ok(test_support.v('one') ->> 'secret' ~ '^whsec_[A-Za-z0-9+/]{43}=$',
          'the secret: whsec_ and the base64 of 32 bytes');
select is(length(decode(substr(test_support.v('one') ->> 'secret', 7), 'base64')), 32,
          'the secret decodes to 32 bytes');
select is(api.update_webhook_endpoint(test_support.id('off'), enabled => false) -> 'enabled',
          'false'::jsonb, 'an endpoint can be disabled');
select ok(not (api.update_webhook_endpoint(test_support.id('one')) ? 'secret'),
          'the secret is shown only when made');
select throws_ok($$select api.rotate_webhook_secret(gen_random_uuid())$$, 'PT404',
                 'Webhook endpoint not found.', 'rotating an unknown endpoint: 404');
select throws_ok($$select api.create_webhook_endpoint('http://x.example/', array['nope.x'])$$,
                 'PT400', 'Unknown event type ''nope.x''.', 'an unknown type: 400');
reset role;

select is((select secret from app.webhook_endpoints where id = test_support.id('one')),
          decode(substr(test_support.v('one') ->> 'secret', 7), 'base64'),
          'the secret is kept as made, to sign with');

-- ---------------------------------------------------------------------------
-- The outbox
-- ---------------------------------------------------------------------------

select private.webhook_event('group.member_joined', '{"group_id": "x"}');
select is((select count(*)::int from app.webhook_events where type = 'group.member_joined'), 0,
          'an event no endpoint listens to is not written');

select private.webhook_event('like_group.approved', '{"group_id": "g1"}');
select is((select count(*)::int from app.webhook_events), 1, 'a subscribed event is written once');
select results_eq(
    $$select e.description from app.webhook_deliveries d
      join app.webhook_endpoints e on e.id = d.endpoint_id order by 1 nulls last$$,
    $$values ('first'), (null)$$,
    'one delivery per enabled endpoint subscribed to the type, none to the disabled one');

-- ---------------------------------------------------------------------------
-- The lease
-- ---------------------------------------------------------------------------

-- Only the first endpoint from here on.
delete from app.webhook_endpoints where id = test_support.id('two');

insert into vars select 'event', jsonb_build_object('id', id, 'timestamp',
    to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
from app.webhook_events;
set local role service_role;
insert into vars select 'claim', to_jsonb(c) from private.webhook_claim(30, 10) c;
select is(test_support.v('claim') ->> 'attempt', '1', 'claimed: the first attempt');
select is((test_support.v('claim') ->> 'body')::jsonb,
          jsonb_build_object('type', 'like_group.approved',
              'timestamp', test_support.v('event') ->> 'timestamp',
              'data', '{"group_id": "g1"}'::jsonb),
          'the body: type, timestamp, data');
select is((select count(*)::int from private.webhook_claim(30, 10)), 0,
          'a leased delivery is not claimed again');
select is(private.webhook_done((test_support.v('claim') ->> 'delivery_id')::uuid,
                               gen_random_uuid(), 200, 5, 'ok', null), 'stale',
          'an outcome under another lease is only logged');
reset role;
select is((select status from app.webhook_deliveries), 'pending', '... and changes nothing');
select is((select count(*)::int from app.webhook_attempts), 1, '... but is in the log');

-- ---------------------------------------------------------------------------
-- The retry schedule (retry_scale 1)
-- ---------------------------------------------------------------------------

-- One failed attempt: make the delivery due, claim it, answer 500. Returns the
-- wait until the next attempt, or the state when there is none.
create function pg_temp.fail_once() returns text
language plpgsql as $$
declare
    v_claim record;
    v_state text;
begin
    update app.webhook_deliveries set next_attempt_at = now();
    set local role service_role;
    select * into v_claim from private.webhook_claim(30, 1);
    v_state := private.webhook_done(v_claim.delivery_id, v_claim.lease, 500, 12,
                                    'no', null, 1, 432000);
    reset role;
    if v_state <> 'pending' then
        return v_state;
    end if;
    return (select (next_attempt_at - now())::text from app.webhook_deliveries);
end;
$$;

update app.webhook_deliveries set lease = null, locked_until = null;
select is(pg_temp.fail_once(), '00:00:05', 'after the 1st failure: 5 s');
select is(pg_temp.fail_once(), '00:05:00', 'after the 2nd: 5 min');
select is(pg_temp.fail_once(), '00:30:00', 'after the 3rd: 30 min');
select is(pg_temp.fail_once(), '02:00:00', 'after the 4th: 2 h');
select is(pg_temp.fail_once(), '05:00:00', 'after the 5th: 5 h');
select is(pg_temp.fail_once(), '10:00:00', 'after the 6th: 10 h');
select is(pg_temp.fail_once(), '10:00:00', 'after the 7th: 10 h');
select is(pg_temp.fail_once(), 'failed', 'the 8th failure fails the delivery');
select is((select (status, attempts, failed_at = now())::text from app.webhook_deliveries),
          '(failed,8,t)', 'failed after 8 attempts');
select is((select count(*)::int from private.webhook_claim(30, 1)), 0,
          'a failed delivery is never claimed');
select results_eq($$select attempt, status_code from app.webhook_attempts order by id$$,
                  $$values (1, 200), (1, 500), (2, 500), (3, 500), (4, 500), (5, 500), (6, 500),
                           (7, 500), (8, 500)$$,
                  'a log row per attempt');
select is((select failing_since from app.webhook_endpoints where id = test_support.id('one')),
          now(), 'the endpoint is failing since the first failure');
set local role service_role;
select is(private.webhook_failed_count(), 1::bigint, 'webhook_failed_count');
reset role;

-- ---------------------------------------------------------------------------
-- Replay, success, disabling
-- ---------------------------------------------------------------------------

set local role service_role;
select is(api.replay_webhook(test_support.id('event')) -> 'deliveries', '1'::jsonb,
          'replay: one delivery starts over');
reset role;
select is((select (status, attempts)::text from app.webhook_deliveries), '(pending,0)',
          '... pending, no attempts');

set local role service_role;
insert into vars select 'again', to_jsonb(c) from private.webhook_claim(30, 1) c;
select is(private.webhook_done((test_support.v('again') ->> 'delivery_id')::uuid,
                               (test_support.v('again') ->> 'lease')::uuid, 204, 3, '', null),
          'delivered', 'a 2xx answer delivers');
reset role;
select is((select failing_since from app.webhook_endpoints where id = test_support.id('one')),
          null, 'a success clears the failure state');

-- Failing for longer than disable_after: disabled, with an audit row.
update app.webhook_endpoints set failing_since = now() - interval '6 days'
where id = test_support.id('one');
set local role service_role;
select is(api.replay_webhook(test_support.id('event')) -> 'deliveries', '1'::jsonb,
          'replayed once more');
reset role;
select is(pg_temp.fail_once(), '00:00:05', 'one more failure');
select is((select (enabled, disabled_at = now())::text from app.webhook_endpoints
           where id = test_support.id('one')), '(f,t)',
          'an endpoint failing for over 5 days is disabled');
select is((select (outcome, status, details ->> 'disable_after_seconds')::text from app.audit_log
           where action = 'webhook_endpoint.disable' and subject_id = test_support.id('one')),
          '(failing,500,432000)', '... with an audit row');
set local role service_role;
select is(private.webhook_pending_count(), 0::bigint,
          'deliveries to a disabled endpoint are not pending work');
select is((select count(*)::int from private.webhook_claim(30, 1)), 0,
          '... and are not claimed');
reset role;

-- ---------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------

update app.webhook_endpoints set enabled = true where id = test_support.id('one');
insert into app.webhook_events (id, type, data, created_at) values
    ('e0000000-0000-4000-8000-000000000001', 'like_group.approved', '{}', now() - interval '31 days'),
    ('e0000000-0000-4000-8000-000000000002', 'like_group.approved', '{}', now() - interval '31 days'),
    ('e0000000-0000-4000-8000-000000000003', 'like_group.approved', '{}', now() - interval '29 days');
insert into app.webhook_deliveries (event_id, endpoint_id, status) values
    ('e0000000-0000-4000-8000-000000000001', test_support.id('one'), 'delivered'),
    ('e0000000-0000-4000-8000-000000000002', test_support.id('one'), 'pending');
set local role service_role;
select is(private.webhook_prune(interval '30 days'), 1::bigint,
          'prune: one old event with nothing left to send');
reset role;
select results_eq(
    $$select id::text from app.webhook_events where id::text like 'e0000000%' order by 1$$,
    $$values ('e0000000-0000-4000-8000-000000000002'), ('e0000000-0000-4000-8000-000000000003')$$,
    'an old event still pending and a recent one are kept');
select is((select count(*)::int from app.webhook_deliveries
           where event_id = 'e0000000-0000-4000-8000-000000000001'), 0,
          'the pruned event''s deliveries went with it');

select * from finish();
rollback;
