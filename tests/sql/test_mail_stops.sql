-- Stopping invitation mail (issue 11): every invitation message carries a
-- stop link whose token (kept only as a hash) stands for its recipient
-- address; api.stop_invitations(token), callable by anyone holding the link,
-- stops all further invitation mail to that address, queued messages included.
-- Invites to a stopped address are still created (same answer: no oracle) and
-- their short codes still work. Actors: the mail worker (service_role), the
-- recipient following the link (anon), an inviter, a partner joining by code.
begin;
select plan(70);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

delete from app.mail_outbox;

insert into auth.users (id, email, raw_user_meta_data) values
    ('b5000000-0000-4000-8000-000000000001', 'stop-inviter@example.com', '{"display_name": "Ida"}'),
    ('b5000000-0000-4000-8000-000000000002', 'stop-inviter2@example.com', '{}'),
    ('b5000000-0000-4000-8000-000000000003', 'Stopper@Example.com', '{}'),
    ('b5000000-0000-4000-8000-000000000009', 'stop-organizer@example.com', '{}');
insert into app.events (id, creator_id, title) values
    ('b5100000-0000-4000-8000-000000000001', 'b5000000-0000-4000-8000-000000000009', 'Stop Cup'),
    ('b5100000-0000-4000-8000-000000000002', 'b5000000-0000-4000-8000-000000000009', 'Stop Cup 2');

-- A message already queued for the address, and one for someone else.
insert into app.mail_outbox (id, to_email, template, data) values
    ('b5200000-0000-4000-8000-000000000001', 'stopper@example.com', 'pair_invite', '{"n": 1}'),
    ('b5200000-0000-4000-8000-000000000002', 'keeper@example.com', 'pair_invite', '{"n": 2}');

create temp table vars (name text primary key, value jsonb);
grant all on vars to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------
-- Worker (service_role): a stop token per message, kept as a hash
-- ---------------------------------------------------------------------------

set local role service_role;
select set_config('request.jwt.claims', '{"role":"service_role"}', true);
insert into vars values
    ('token', to_jsonb(private.mail_stop_token('Stopper@Example.com'))),
    ('token2', to_jsonb(private.mail_stop_token('stopper@example.com'))),
    ('keeper', to_jsonb(private.mail_stop_token('keeper@example.com')));
reset role;

select ok(test_support.v('token') #>> '{}' ~ '^[A-Za-z0-9_-]{43}$',
    'worker: a stop token is 43 base64url characters (256 bits)');
select isnt(test_support.v('token') #>> '{}', test_support.v('token2') #>> '{}',
    'worker: each message gets a new token');
select results_eq(
    $$select email, token_hash = sha256(convert_to(test_support.v('token') #>> '{}', 'UTF8'))
      from app.mail_stop_tokens
      where email = 'stopper@example.com' order by created_at, token_hash = sha256(convert_to(test_support.v('token') #>> '{}', 'UTF8')) desc
      limit 1$$,
    $$values ('stopper@example.com'::text, true)$$,
    'worker: the token is kept as its SHA-256, for the lower-cased address');
select is_empty(
    $$select from app.mail_stop_tokens t
      where position(convert_to(test_support.v('token') #>> '{}', 'UTF8') in t.token_hash) > 0$$,
    'worker: the plain token is stored nowhere');
select throws_ok($$set local role authenticated; select private.mail_stop_token('x@example.com')$$,
    '42501', null, 'authenticated cannot make stop tokens');
reset role;

-- ---------------------------------------------------------------------------
-- The recipient (anon) follows the link
-- ---------------------------------------------------------------------------

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select is(test_support.attempt($$api.stop_invitations('not-a-token')$$),
    '{"status": "404", "headers": null, "body": {"code": "PT404",
      "message": "This link is not valid.", "details": null, "hint": null}}'::jsonb,
    'anon: an unknown token is 404, answered (not raised) so that it is counted');
select is(test_support.attempt($$api.stop_invitations(null)$$) -> 'status', '"404"'::jsonb,
    'anon: no token is 404');
select is(api.stop_invitations(test_support.v('token') #>> '{}'), '{"stopped": true}'::jsonb,
    'anon: the stop link answers {"stopped": true}');
select is(api.stop_invitations(test_support.v('token2') #>> '{}'), '{"stopped": true}'::jsonb,
    'anon: stopping again (another message''s link) answers the same');
select is(api.stop_invitations(test_support.v('token') #>> '{}'), '{"stopped": true}'::jsonb,
    'anon: following the same link again answers the same');
reset role;

select results_eq(
    $$select actor_id, outcome, status from app.audit_log
      where action = 'mail.stop' and created_at = now()$$,
    $$values (null::uuid, 'stopped'::text, 200)$$,
    'one audit entry for the stop; the repeats wrote none');
select results_eq(
    $$select bucket, sum(hits)::integer from app.rate_limit_counters
      where window_start = now() and bucket like 'stop%' group by bucket$$,
    $$values ('stop_token'::text, 3)$$,
    'without a client address (a direct SQL caller) only the tokens are counted');

select results_eq($$select email from app.mail_stops
                     where email in ('stopper@example.com', 'keeper@example.com') order by email$$,
    $$values ('stopper@example.com'::text)$$,
    'the address is stopped, and only it');
select results_eq(
    $$select id, cancelled_at is not null, sent_at is null from app.mail_outbox order by id$$,
    $$values ('b5200000-0000-4000-8000-000000000001'::uuid, true, true),
             ('b5200000-0000-4000-8000-000000000002'::uuid, false, true)$$,
    'the message queued for the address is cancelled; others stay queued');

set local role service_role;
select results_eq($$select to_email from private.mail_claim()$$,
    $$values ('keeper@example.com'::text)$$,
    'worker: a cancelled message is never claimed');
reset role;

-- ---------------------------------------------------------------------------
-- Inviters: invites to a stopped address are created, answered alike, not mailed
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('b5000000-0000-4000-8000-000000000001');
insert into vars values ('to_stopped', test_support.attempt(
    $$api.create_pair_invite('b5100000-0000-4000-8000-000000000001', 'STOPPER@example.com')$$));
select test_support.sign_in('b5000000-0000-4000-8000-000000000002');
insert into vars values ('to_other', test_support.attempt(
    $$api.create_pair_invite('b5100000-0000-4000-8000-000000000001', 'fresh@example.com')$$));
reset role;

select is(test_support.v('to_stopped') -> 'status', 'null'::jsonb,
    'inviter: no error status for a stopped address');
select is(
    array(select jsonb_object_keys(test_support.v('to_stopped') -> 'body') order by 1),
    array(select jsonb_object_keys(test_support.v('to_other') -> 'body') order by 1),
    'inviter: the answer has the same shape as for an address that gets mail');
select results_eq(
    $$select status, invitee_email from app.pair_invites
      where id = (test_support.v('to_stopped') #>> '{body,id}')::uuid$$,
    $$values ('sent'::text, 'stopper@example.com'::text)$$,
    'the invite to the stopped address exists');
select results_eq(
    $$select to_email from app.mail_outbox where cancelled_at is null order by to_email$$,
    $$values ('fresh@example.com'::text), ('keeper@example.com'::text)$$,
    'no message is queued for the stopped address; other addresses get theirs');
select results_eq(
    $$select details from app.audit_log
      where subject_id in ((test_support.v('to_stopped') #>> '{body,id}')::uuid,
                           (test_support.v('to_other') #>> '{body,id}')::uuid)
      order by actor_id$$,
    $$values ('{"emailed": true, "event_id": "b5100000-0000-4000-8000-000000000001"}'::jsonb),
             ('{"emailed": true, "event_id": "b5100000-0000-4000-8000-000000000001"}'::jsonb)$$,
    'the inviters'' audit entries (which they can read) are alike');

-- The short code of the unmailed invite still works.
set local role authenticated;
select test_support.sign_in('b5000000-0000-4000-8000-000000000003', 'Stopper@Example.com');
insert into vars values ('joined', test_support.attempt(format('api.join_pair_invite(%L)',
    test_support.v('to_stopped') #>> '{body,short_code}')));
insert into vars values ('accepted', test_support.attempt(format('api.accept_pair_invite(%L)',
    test_support.v('joined') #>> '{body,token}')));
reset role;
select is(test_support.v('joined') -> 'status', 'null'::jsonb,
    'partner: the short code of an unmailed invite still works');
select is(jsonb_array_length(test_support.v('accepted') #> '{body,registrations}'), 2,
    'partner: and the invite can be accepted');

-- ---------------------------------------------------------------------------
-- Floods: counted per token, and per client address when the gateway gives one
-- ---------------------------------------------------------------------------

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);
-- 'token' was used twice above; the limit is 5 uses per token and window.
select is(test_support.sc(test_support.attempt(format('api.stop_invitations(%L)',
    test_support.v('token') #>> '{}'))), '-', 'anon: the third use of a link is answered')
from generate_series(1, 3);
insert into vars values ('token_limited', test_support.attempt(format('api.stop_invitations(%L)',
    test_support.v('token') #>> '{}')));
insert into vars values ('token_limited_again', test_support.attempt(format(
    'api.stop_invitations(%L)', test_support.v('token') #>> '{}')));
reset role;
select is(test_support.v('token_limited') - 'headers',
    '{"status": "429", "body": {"code": "PT429", "message": "Too many attempts. Try again later.",
      "details": "retry after 600 seconds", "hint": null}}'::jsonb,
    'anon: the sixth use of one link within the window is 429');
select is(test_support.v('token_limited') -> 'headers', '[{"Retry-After": "600"}]'::jsonb,
    'anon: with Retry-After, never more than the window');
select results_eq(
    $$select outcome, status, details from app.audit_log
      where action = 'mail.stop' and created_at = now() order by id$$,
    $$values ('stopped'::text, 200, '{}'::jsonb),
             ('rate_limited'::text, 429, '{"counted_in": "audit_refusals"}'::jsonb)$$,
    'two refusals of one token write one audit entry');
select results_eq(
    $$select refused from app.audit_refusals where action = 'mail.stop' and last_at = now()$$,
    $$values (2)$$,
    'the refusals are counted in audit_refusals');

-- Through the gateway: request.client_addr (an IPv6 client counts by its /64).
select is(private.request_client_addr(), null::inet, 'no client address: null');
select set_config('request.client_addr', 'not an address', true);
select is(private.request_client_addr(), null::inet, 'a value that is no address: null');
select is(private.client_key('2001:db8:1:2::1'), private.client_key('2001:db8:1:2:ffff::9'),
    'two addresses of one IPv6 /64 share a key');
select isnt(private.client_key('192.0.2.1'), private.client_key('192.0.2.2'),
    'two IPv4 addresses do not');
select is(private.client_key('::ffff:192.0.2.1'), private.client_key('192.0.2.1'),
    'an IPv4 client seen through a dual-stack socket is its IPv4 address');
select isnt(private.client_key('::ffff:192.0.2.1'), private.client_key('::ffff:192.0.2.2'),
    'so two of them are not one /64');

set local role anon;
select set_config('request.client_addr', '192.0.2.1', true);
select is(test_support.sc(test_support.attempt($$api.stop_invitations('wrong')$$)), '404 PT404',
    'anon: unknown tokens from one address are answered...')
from generate_series(1, 30);
insert into vars values ('client_limited',
    test_support.attempt($$api.stop_invitations('wrong')$$));
insert into vars values ('client_limited_valid', test_support.attempt(format(
    'api.stop_invitations(%L)', test_support.v('keeper') #>> '{}')));
select set_config('request.client_addr', '192.0.2.2', true);
insert into vars values ('other_client',
    test_support.attempt($$api.stop_invitations('wrong')$$));
reset role;
select is(test_support.sc(test_support.v('client_limited')), '429 PT429',
    '...up to 30 in the window; then 429');
select is(test_support.sc(test_support.v('client_limited_valid')), '429 PT429',
    'a valid link from that address is refused as well');
select is(test_support.sc(test_support.v('other_client')), '404 PT404',
    'another address is not limited');
select results_eq(
    $$select email from app.mail_stops where email = 'keeper@example.com'$$,
    $$select null::text where false$$,
    'the refused link stopped nothing');
select results_eq(
    $$select count(*)::integer from app.audit_log
      where action = 'mail.stop' and outcome = 'rate_limited' and created_at = now()$$,
    $$values (2)$$,
    'the address''s refusals wrote one more audit entry (one per address and window)');

select * from finish();
rollback;
