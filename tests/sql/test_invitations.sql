-- Invitations beyond the first message (issue 21): answer_pair_invite and each
-- of its refusals (the rules it shares with accept_pair_invite), resending,
-- reminders, the language of the mail, update_profile(locale), and the
-- authors' approval queue (event_like_groups, topic event:{id}).
--
-- Actors: the inviter, the partner (addressee of the emailed invites), a wrong
-- account, two authors of a tournament with like groups, a stranger, anonymous.
-- One transaction: now() is frozen; expiry and passed deadlines are arranged
-- as the superuser.
begin;
select plan(64);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

insert into auth.users (id, email, raw_user_meta_data) values
    ('b1000000-0000-4000-8000-000000000001', 'ines@example.com', '{"display_name": "Ines Inviter"}'),
    ('b1000000-0000-4000-8000-000000000002', 'Pat@Example.com', '{"display_name": "Pat Partner"}'),
    ('b1000000-0000-4000-8000-000000000003', 'wrong@example.com', '{}'),
    ('b1000000-0000-4000-8000-000000000004', 'author.one@example.com', '{"display_name": "Ada Author"}'),
    ('b1000000-0000-4000-8000-000000000005', 'author.two@example.com', '{"display_name": "Bo Author"}'),
    ('b1000000-0000-4000-8000-000000000006', 'liker@example.com', '{"display_name": "Lia Liker"}'),
    ('b1000000-0000-4000-8000-000000000007', 'friend@example.com', '{"display_name": "Fred Friend"}'),
    ('b1000000-0000-4000-8000-000000000009', 'organizer@example.com', '{}');

insert into app.events (id, creator_id, title, registration_deadline, capacity, seats_taken, status) values
    ('e1000000-0000-4000-8000-000000000001', 'b1000000-0000-4000-8000-000000000009', 'Open Cup',      null,                      10,   0, 'open'),
    ('e1000000-0000-4000-8000-000000000002', 'b1000000-0000-4000-8000-000000000009', 'Past Cup',      now() - interval '1 hour', null, 0, 'open'),
    ('e1000000-0000-4000-8000-000000000003', 'b1000000-0000-4000-8000-000000000009', 'Crowded Cup',   null,                      3,    2, 'open'),
    ('e1000000-0000-4000-8000-000000000004', 'b1000000-0000-4000-8000-000000000009', 'Closed Cup',    null,                      null, 0, 'closed'),
    ('e1000000-0000-4000-8000-000000000005', 'b1000000-0000-4000-8000-000000000009', 'Taken Cup',     null,                      null, 1, 'open'),
    ('e1000000-0000-4000-8000-000000000006', 'b1000000-0000-4000-8000-000000000009', 'Stale Cup',     null,                      null, 0, 'open'),
    ('e1000000-0000-4000-8000-000000000007', 'b1000000-0000-4000-8000-000000000009', 'Revoked Cup',   null,                      null, 0, 'open'),
    ('e1000000-0000-4000-8000-000000000008', 'b1000000-0000-4000-8000-000000000009', 'Declined Cup',  null,                      null, 0, 'open'),
    ('e1000000-0000-4000-8000-000000000009', 'b1000000-0000-4000-8000-000000000009', 'Code Cup',      null,                      null, 0, 'open'),
    ('e1000000-0000-4000-8000-000000000010', 'b1000000-0000-4000-8000-000000000009', 'Resend Cup',    null,                      null, 0, 'open'),
    ('e1000000-0000-4000-8000-000000000011', 'b1000000-0000-4000-8000-000000000009', 'Remind Cup',    null,                      null, 0, 'open'),
    ('e1000000-0000-4000-8000-000000000012', 'b1000000-0000-4000-8000-000000000004', 'Like Cup',      null,                      null, 0, 'open');

-- The partner is already registered for Taken Cup.
insert into app.registrations (event_id, user_id) values
    ('e1000000-0000-4000-8000-000000000005', 'b1000000-0000-4000-8000-000000000002');

-- Open invites from the inviter, one per situation; one code-only.
insert into app.pair_invites (id, event_id, inviter_id, invitee_email, short_code, expires_at, status, created_at) values
    ('f1000000-0000-4000-8000-000000000001', 'e1000000-0000-4000-8000-000000000001', 'b1000000-0000-4000-8000-000000000001', 'pat@example.com', 'AAAA2237', now() + interval '7 days', 'sent', now()),
    ('f1000000-0000-4000-8000-000000000002', 'e1000000-0000-4000-8000-000000000002', 'b1000000-0000-4000-8000-000000000001', 'pat@example.com', 'AAAA2222', now() + interval '7 days', 'sent', now()),
    ('f1000000-0000-4000-8000-000000000003', 'e1000000-0000-4000-8000-000000000003', 'b1000000-0000-4000-8000-000000000001', 'pat@example.com', 'AAAA2223', now() + interval '7 days', 'sent', now()),
    ('f1000000-0000-4000-8000-000000000004', 'e1000000-0000-4000-8000-000000000004', 'b1000000-0000-4000-8000-000000000001', 'pat@example.com', 'AAAA2224', now() + interval '7 days', 'sent', now()),
    ('f1000000-0000-4000-8000-000000000005', 'e1000000-0000-4000-8000-000000000005', 'b1000000-0000-4000-8000-000000000001', 'pat@example.com', 'AAAA2225', now() + interval '7 days', 'sent', now()),
    ('f1000000-0000-4000-8000-000000000006', 'e1000000-0000-4000-8000-000000000006', 'b1000000-0000-4000-8000-000000000001', 'pat@example.com', 'AAAA2226', now() - interval '1 minute', 'sent', now() - interval '7 days'),
    ('f1000000-0000-4000-8000-000000000007', 'e1000000-0000-4000-8000-000000000007', 'b1000000-0000-4000-8000-000000000001', 'pat@example.com', 'AAAA2227', now() + interval '7 days', 'revoked', now()),
    ('f1000000-0000-4000-8000-000000000008', 'e1000000-0000-4000-8000-000000000008', 'b1000000-0000-4000-8000-000000000001', 'pat@example.com', 'AAAA2228', now() + interval '7 days', 'sent', now()),
    ('f1000000-0000-4000-8000-000000000009', 'e1000000-0000-4000-8000-000000000009', 'b1000000-0000-4000-8000-000000000001', null,              'AAAA2229', now() + interval '7 days', 'sent', now()),
    ('f1000000-0000-4000-8000-000000000010', 'e1000000-0000-4000-8000-000000000010', 'b1000000-0000-4000-8000-000000000001', 'resend@example.com', 'AAAA2232', now() + interval '7 days', 'sent', now()),
    -- Reminders: due (made 6 days ago, expiring in 12 hours); due but to a stopped
    -- address; young (made 1 hour ago, expiring in 12 hours: not reminded); not
    -- due yet (expiring in 3 days).
    ('f1000000-0000-4000-8000-000000000011', 'e1000000-0000-4000-8000-000000000011', 'b1000000-0000-4000-8000-000000000001', 'pat@example.com',      'AAAA2233', now() + interval '12 hours', 'sent', now() - interval '6 days'),
    ('f1000000-0000-4000-8000-000000000012', 'e1000000-0000-4000-8000-000000000011', 'b1000000-0000-4000-8000-000000000003', 'stopped@example.com',  'AAAA2234', now() + interval '12 hours', 'sent', now() - interval '6 days'),
    ('f1000000-0000-4000-8000-000000000013', 'e1000000-0000-4000-8000-000000000011', 'b1000000-0000-4000-8000-000000000006', 'young@example.com',    'AAAA2235', now() + interval '12 hours', 'sent', now() - interval '1 hour'),
    ('f1000000-0000-4000-8000-000000000014', 'e1000000-0000-4000-8000-000000000011', 'b1000000-0000-4000-8000-000000000007', 'later@example.com',    'AAAA2236', now() + interval '3 days',   'sent', now() - interval '4 days');
-- Their codes' routes, as create_pair_invite writes them (migration 0040).
insert into app.pair_code_routes (short_code, event_id)
select short_code, event_id from app.pair_invites where short_code like 'AAAA22%';
insert into app.mail_stops (email) values ('stopped@example.com');

-- Webhooks: an endpoint subscribed to the invitations' and registrations'
-- events, so that each change writes its event (app.webhook_events).
insert into app.webhook_endpoints (url, event_types, secret) values
    ('https://hooks.example.com/invitations',
     array['pair_invite.sent', 'pair_invite.accepted', 'pair_invite.declined',
           'pair_invite.revoked', 'registration.confirmed'],
     decode(repeat('ab', 32), 'hex'));

-- Like Cup: two authors; a pending group of the liker and a friend.
insert into app.event_authors (event_id, user_id) values
    ('e1000000-0000-4000-8000-000000000012', 'b1000000-0000-4000-8000-000000000004'),
    ('e1000000-0000-4000-8000-000000000012', 'b1000000-0000-4000-8000-000000000005');
insert into app.like_groups (id, event_id, creator_id) values
    ('c1000000-0000-4000-8000-000000000001', 'e1000000-0000-4000-8000-000000000012', 'b1000000-0000-4000-8000-000000000006');
-- Its route, as like_event writes it (migration 0040).
insert into app.like_group_routes (id, event_id) values
    ('c1000000-0000-4000-8000-000000000001', 'e1000000-0000-4000-8000-000000000012');
insert into app.like_group_members (group_id, event_id, user_id, created_at) values
    ('c1000000-0000-4000-8000-000000000001', 'e1000000-0000-4000-8000-000000000012', 'b1000000-0000-4000-8000-000000000006', now()),
    ('c1000000-0000-4000-8000-000000000001', 'e1000000-0000-4000-8000-000000000012', 'b1000000-0000-4000-8000-000000000007', now() + interval '1 second');

create temp table vars (name text primary key, value jsonb);
grant all on vars to anon, authenticated, service_role;

create function pg_temp.scd(a jsonb) returns text
language sql immutable as $$
    select case when a ? 'raised' then 'raised ' || (a ->> 'raised')
                else concat_ws(' ', coalesce(a ->> 'status', '-'), a #>> '{body,code}',
                               a #>> '{body,details}') end
$$;
grant execute on function pg_temp.scd(jsonb) to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------
-- Partner: answering in place, accepted
-- ---------------------------------------------------------------------------

select test_support.sign_in('b1000000-0000-4000-8000-000000000002', 'pat@example.com');
set local role authenticated;

insert into vars values ('ok', test_support.attempt(
    $$api.answer_pair_invite('f1000000-0000-4000-8000-000000000001', true)$$));
select is(test_support.v('ok') ->> 'status', null,
    'partner: accepting an invite sent to the address on their token answers with no error status');
select is(jsonb_array_length(test_support.v('ok') #> '{body,registrations}'), 2,
    'partner: the answer lists two registrations');
select is(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000001', true)$$) -> 'body',
    test_support.v('ok') -> 'body',
    'partner: accepting again returns the same result');

-- Every refusal of accept_pair_invite, through answer_pair_invite.
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000002', true)$$)),
    '410 PT410 deadline', 'partner: the registration deadline passed: 410 deadline');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000003', true)$$)),
    '409 PT409 full', 'partner: two seats not free (3 seats, 2 taken): 409 full');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000004', true)$$)),
    '400 PT400 closed', 'partner: a closed event: 400 closed');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000005', true)$$)),
    '409 PT409 already_registered', 'partner: already registered for the event: 409 already_registered');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000006', true)$$)),
    '410 PT410 expired', 'partner: an expired invite: 410 expired');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000007', true)$$)),
    '410 PT410 revoked', 'partner: a revoked invite: 410 revoked');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000009', true)$$)),
    '403 42501 not_addressee', 'partner: an invite made without an email is answered with its code only: 403');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-0000-0000-000000000000', true)$$)),
    '404 PT404 not_found', 'partner: an unknown invite: 404');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000008', null)$$)),
    '400 PT400 accept', 'partner: accept must be true or false: 400');

-- Declining in place, then accepting the declined invite.
select is(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000008', false)$$),
    '{"status": null, "headers": null, "body": {"id": "f1000000-0000-4000-8000-000000000008", "status": "declined"}}'::jsonb,
    'partner: declining answers {id, status: declined}');
select is(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000008', false)$$) -> 'body',
    '{"id": "f1000000-0000-4000-8000-000000000008", "status": "declined"}'::jsonb,
    'partner: declining again answers the same');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000008', true)$$)),
    '410 PT410 declined', 'partner: a declined invite cannot be accepted: 410 declined');

reset role;
select results_eq(
    $$select event_id::text, user_id::text, status from app.registrations
      where event_id in ('e1000000-0000-4000-8000-000000000001', 'e1000000-0000-4000-8000-000000000002',
                         'e1000000-0000-4000-8000-000000000003', 'e1000000-0000-4000-8000-000000000004',
                         'e1000000-0000-4000-8000-000000000006', 'e1000000-0000-4000-8000-000000000007',
                         'e1000000-0000-4000-8000-000000000008')
      order by event_id, user_id$$,
    $$values ('e1000000-0000-4000-8000-000000000001', 'b1000000-0000-4000-8000-000000000001', 'confirmed'),
             ('e1000000-0000-4000-8000-000000000001', 'b1000000-0000-4000-8000-000000000002', 'confirmed')$$,
    'rows: only the accepted invite registered anyone, both people, once');
select is((select seats_taken from app.events where id = 'e1000000-0000-4000-8000-000000000001'), 2,
    'rows: the accepted pair took two seats');
select is((select pg_catalog.count(*)::integer from app.audit_log
           where actor_id = 'b1000000-0000-4000-8000-000000000002' and action = 'pair_invite.accept'
             and status >= 400),
    9, 'rows: each refused accept left an audit entry (the refusal commits)');

-- Webhooks: answer_pair_invite shares the rules, and so the events, of
-- accept_pair_invite and decline_pair_invite: one event per change, none for
-- an answer repeated or refused.
select results_eq(
    $$select type, data ->> 'invite_id', data ->> 'invitee_id', data ->> 'pair_id'
      from app.webhook_events where type like 'pair\_invite.%' order by type, data ->> 'invite_id'$$,
    $$select 'pair_invite.accepted', 'f1000000-0000-4000-8000-000000000001',
             'b1000000-0000-4000-8000-000000000002', pair_id::text
      from app.pair_invites where id = 'f1000000-0000-4000-8000-000000000001'
      union all
      select 'pair_invite.declined', 'f1000000-0000-4000-8000-000000000008',
             'b1000000-0000-4000-8000-000000000002', null$$,
    'webhooks: answering writes pair_invite.accepted and pair_invite.declined once each');
select results_eq(
    $$select data ->> 'registration_id', data ->> 'user_id', data ->> 'pair_id'
      from app.webhook_events where type = 'registration.confirmed' order by data ->> 'user_id'$$,
    $$select id::text, user_id::text, pair_id::text from app.registrations
      where event_id = 'e1000000-0000-4000-8000-000000000001' order by user_id::text$$,
    'webhooks: the accepted pair writes registration.confirmed once per person');

-- create_pair_invite revokes the inviter's open invite of the event: that is
-- pair_invite.revoked, beside pair_invite.sent of the new one.
insert into app.events (id, creator_id, title, capacity, status) values
    ('e1000000-0000-4000-8000-000000000013', 'b1000000-0000-4000-8000-000000000009', 'Replaced Cup', 10, 'open');
insert into app.pair_invites (id, event_id, inviter_id, short_code, expires_at, status) values
    ('f1000000-0000-4000-8000-000000000015', 'e1000000-0000-4000-8000-000000000013',
     'b1000000-0000-4000-8000-000000000001', 'AAAA2238', now() + interval '7 days', 'sent');
insert into app.pair_code_routes (short_code, event_id)
values ('AAAA2238', 'e1000000-0000-4000-8000-000000000013');
select test_support.sign_in('b1000000-0000-4000-8000-000000000001', 'ines@example.com');
set local role authenticated;
insert into vars values ('replacing', api.create_pair_invite('e1000000-0000-4000-8000-000000000013'));
reset role;
select is((select status from app.pair_invites where id = 'f1000000-0000-4000-8000-000000000015'),
    'revoked', 'webhooks: a new invite revokes the inviter''s open one');
select results_eq(
    $$select type, data ->> 'invite_id', data ->> 'inviter_id' from app.webhook_events
      where data ->> 'event_id' = 'e1000000-0000-4000-8000-000000000013' order by type$$,
    $$values ('pair_invite.revoked', 'f1000000-0000-4000-8000-000000000015',
              'b1000000-0000-4000-8000-000000000001'),
             ('pair_invite.sent', (select value ->> 'id' from vars where name = 'replacing'),
              'b1000000-0000-4000-8000-000000000001')$$,
    'webhooks: pair_invite.revoked for the replaced invite, pair_invite.sent for the new one');
set local role authenticated;
insert into vars values ('again', api.create_pair_invite('e1000000-0000-4000-8000-000000000013'));
reset role;
select is((select pg_catalog.count(*)::integer from app.webhook_events
           where type = 'pair_invite.revoked'
             and data ->> 'event_id' = 'e1000000-0000-4000-8000-000000000013'),
    2, 'webhooks: a third invite revokes only the second (one event each)');
select is((select data ->> 'invite_id' from app.webhook_events
           where type = 'pair_invite.revoked'
             and data ->> 'event_id' = 'e1000000-0000-4000-8000-000000000013'
             and data ->> 'invite_id' <> 'f1000000-0000-4000-8000-000000000015'),
    (select value ->> 'id' from vars where name = 'replacing'),
    'webhooks: the one revoked the second time is the invite that replaced the first');

-- ---------------------------------------------------------------------------
-- Who else may answer
-- ---------------------------------------------------------------------------

-- The partner's account, but a token whose email claim is another address.
select test_support.sign_in('b1000000-0000-4000-8000-000000000002', 'wrong@example.com');
set local role authenticated;
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000003', false)$$)),
    '403 42501 not_addressee', 'partner: a token whose email is not the account''s does not name the addressee: 403');
select test_support.sign_in('b1000000-0000-4000-8000-000000000002');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000003', false)$$)),
    '403 42501 not_addressee', 'partner: a token without an email claim: 403');

select test_support.sign_in('b1000000-0000-4000-8000-000000000003', 'wrong@example.com');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000003', true)$$)),
    '403 42501 not_addressee', 'wrong account: an invite sent to someone else: 403');

select test_support.sign_in('b1000000-0000-4000-8000-000000000001', 'ines@example.com');
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000003', true)$$)),
    '403 42501 own_invite', 'inviter: cannot answer their own invitation: 403 own_invite');
reset role;

set local role anon;
select is(pg_temp.scd(test_support.attempt($$api.answer_pair_invite('f1000000-0000-4000-8000-000000000003', true)$$)),
    'raised 42501', 'anonymous: may not call answer_pair_invite');
reset role;

-- ---------------------------------------------------------------------------
-- Inviter: resending
-- ---------------------------------------------------------------------------

select test_support.sign_in('b1000000-0000-4000-8000-000000000001', 'ines@example.com');
set local role authenticated;
select is(test_support.attempt($$api.resend_pair_invite('f1000000-0000-4000-8000-000000000010')$$),
    jsonb_build_object('status', null, 'headers', null, 'body', jsonb_build_object(
        'id', 'f1000000-0000-4000-8000-000000000010', 'resends', 1,
        'expires_at', now() + interval '7 days')),
    'inviter: the first resend answers {id, resends: 1, expires_at}');
select is(test_support.attempt($$api.resend_pair_invite('f1000000-0000-4000-8000-000000000010')$$) #>> '{body,resends}',
    '2', 'inviter: the second resend answers resends: 2');
select is(pg_temp.scd(test_support.attempt($$api.resend_pair_invite('f1000000-0000-4000-8000-000000000010')$$)),
    '409 PT409 resend_limit', 'inviter: a third resend of one invite: 409 resend_limit');
select is(pg_temp.scd(test_support.attempt($$api.resend_pair_invite('f1000000-0000-4000-8000-000000000009')$$)),
    '400 PT400 no_email', 'inviter: a code-only invite has nobody to resend to: 400 no_email');
select is(pg_temp.scd(test_support.attempt($$api.resend_pair_invite('f1000000-0000-4000-8000-000000000007')$$)),
    '410 PT410 revoked', 'inviter: a revoked invite is not resent: 410');
select is(pg_temp.scd(test_support.attempt($$api.resend_pair_invite('f1000000-0000-4000-8000-000000000006')$$)),
    '410 PT410 expired', 'inviter: an expired invite is not resent: 410');
select is(pg_temp.scd(test_support.attempt($$api.resend_pair_invite('f1000000-0000-0000-0000-000000000000')$$)),
    '404 PT404 not_found', 'inviter: an unknown invite: 404');
select test_support.sign_in('b1000000-0000-4000-8000-000000000003', 'wrong@example.com');
select is(pg_temp.scd(test_support.attempt($$api.resend_pair_invite('f1000000-0000-4000-8000-000000000010')$$)),
    '403 42501 not_inviter', 'wrong account: only the inviter resends: 403');
reset role;

select results_eq(
    $$select template, data ->> 'short_code', data ->> 'invite_id' from app.mail_outbox
      where to_email = 'resend@example.com' order by created_at, id$$,
    $$values ('pair_invite'::text, 'AAAA2232'::text, 'f1000000-0000-4000-8000-000000000010'::text),
             ('pair_invite', 'AAAA2232', 'f1000000-0000-4000-8000-000000000010')$$,
    'rows: two resends queued two messages with the same code');
select is((select resend_count from app.pair_invites where id = 'f1000000-0000-4000-8000-000000000010'), 2,
    'rows: the invite counts two resends');

-- The per-recipient limit (invite_mail: 3 a day) counts resends: a third
-- message to the address is queued, a fourth is not, though the call succeeds.
update app.pair_invites set resend_count = 0 where id = 'f1000000-0000-4000-8000-000000000010';
select test_support.sign_in('b1000000-0000-4000-8000-000000000001', 'ines@example.com');
set local role authenticated;
select is(pg_temp.scd(test_support.attempt($$api.resend_pair_invite('f1000000-0000-4000-8000-000000000010')$$))
       || ' / ' || pg_temp.scd(test_support.attempt($$api.resend_pair_invite('f1000000-0000-4000-8000-000000000010')$$)),
    '- / -', 'inviter: resends over the recipient''s limit answer the same');
reset role;
select is((select pg_catalog.count(*)::integer from app.mail_outbox where to_email = 'resend@example.com'), 3,
    'rows: the recipient got at most 3 invitation messages (the invite_mail limit)');

-- ---------------------------------------------------------------------------
-- Reminders (the mail workers, as service_role)
-- ---------------------------------------------------------------------------

-- Invites of other tests in this database are out of this count (rolled back).
update app.pair_invites set reminded_at = now()
where reminded_at is null and event_id <> 'e1000000-0000-4000-8000-000000000011';
set local role service_role;
select is(private.queue_due_reminders(86400), 2,
    'worker: two invites are due (one to a stopped address); the young one and the later one are not');
select is(private.queue_due_reminders(86400), 0, 'worker: a second pass finds nothing: never twice');
reset role;
select results_eq(
    $$select to_email, data ->> 'invite_id', data ->> 'short_code' from app.mail_outbox
      where template = 'pair_invite_reminder' and data ->> 'invite_id' like 'f1000000-%' order by to_email$$,
    $$values ('pat@example.com'::text, 'f1000000-0000-4000-8000-000000000011'::text, 'AAAA2233'::text)$$,
    'rows: one reminder message, none to the stopped address');
select results_eq(
    $$select id::text, reminded_at is not null from app.pair_invites
      where event_id = 'e1000000-0000-4000-8000-000000000011' order by id$$,
    $$values ('f1000000-0000-4000-8000-000000000011', true), ('f1000000-0000-4000-8000-000000000012', true),
             ('f1000000-0000-4000-8000-000000000013', false), ('f1000000-0000-4000-8000-000000000014', false)$$,
    'rows: the due invites are marked reminded, the others not');
select throws_ok(
    $$insert into app.mail_outbox (to_email, template, data) values ('pat@example.com',
      'pair_invite_reminder', '{"invite_id": "f1000000-0000-4000-8000-000000000011"}')$$,
    '23505', null, 'rows: a second reminder message for one invite is refused by the unique index');

select test_support.sign_in('b1000000-0000-4000-8000-000000000001', 'ines@example.com');
set local role authenticated;
select is((select (i ->> 'reminded_at')::timestamptz from jsonb_array_elements(api.my_pair_invites() -> 'sent') i
           where i ->> 'id' = 'f1000000-0000-4000-8000-000000000011'), now(),
    'inviter: my_pair_invites shows when the reminder went out, beside expires_at');
reset role;

-- ---------------------------------------------------------------------------
-- Languages: update_profile(locale), me(), and the language of the mail
-- ---------------------------------------------------------------------------

select test_support.sign_in('b1000000-0000-4000-8000-000000000002', 'pat@example.com');
set local role authenticated;
select is(api.me() ->> 'locale', null, 'partner: no locale until one is chosen');
select is(api.update_profile(locale => 'ca') -> 'locale', '"ca"', 'partner: update_profile(locale) sets it');
select is(api.update_profile('Pat P.') ->> 'locale', 'ca', 'partner: the one-argument call renames and keeps the locale');
select is(api.me() ->> 'display_name', 'Pat P.', 'partner: me() shows the new name');
select throws_ok($$select api.update_profile(locale => 'fr')$$, '22023', null, 'partner: another locale is 400');
select throws_ok($$select api.update_profile()$$, '22023', null, 'partner: neither name nor locale is 400');
reset role;

-- The language of an invitation: (1) the addressee's profile, (2) else the
-- inviter's language at invite time (Accept-Language), (3) else English.
select test_support.sign_in('b1000000-0000-4000-8000-000000000006', 'liker@example.com');
set local role authenticated;
select set_config('request.headers', '{"accept-language": "en-GB,en;q=0.9"}', true);
select ok(api.create_pair_invite('e1000000-0000-4000-8000-000000000001', 'pat@example.com') ? 'short_code', 'inviter 1: invites the partner (profile: ca) in English');
select test_support.sign_in('b1000000-0000-4000-8000-000000000007', 'friend@example.com');
select set_config('request.headers', '{"accept-language": "fr-FR, ca;q=0.8, en;q=0.5"}', true);
select ok(api.create_pair_invite('e1000000-0000-4000-8000-000000000001', 'nobody-ca@example.com') ? 'short_code', 'inviter 2: invites an address without an account in Catalan');
select set_config('request.headers', '{}', true);
select ok(api.create_pair_invite('e1000000-0000-4000-8000-000000000010', 'nobody-en@example.com') ? 'short_code', 'inviter 2: invites another without Accept-Language nor a profile language');
reset role;
select results_eq(
    $$select to_email, data ->> 'locale' from app.mail_outbox
      where to_email in ('pat@example.com', 'nobody-ca@example.com', 'nobody-en@example.com')
        and template = 'pair_invite' order by to_email$$,
    $$values ('nobody-ca@example.com'::text, 'ca'::text), ('nobody-en@example.com', 'en'), ('pat@example.com', 'ca')$$,
    'rows: profile language first, then the inviter''s Accept-Language, then English');

-- ---------------------------------------------------------------------------
-- Authors: the approval queue and its topic
-- ---------------------------------------------------------------------------

select test_support.sign_in('b1000000-0000-4000-8000-000000000004', 'author.one@example.com');
set local role authenticated;
select is(api.event_like_groups('e1000000-0000-4000-8000-000000000012') #> '{groups,0,members}',
    '[{"id": "b1000000-0000-4000-8000-000000000006", "display_name": "Lia Liker"},
      {"id": "b1000000-0000-4000-8000-000000000007", "display_name": "Fred Friend"}]'::jsonb,
    'author: the queue lists a pending group''s members by display name, creator first');
select is(api.approve_like_group('c1000000-0000-4000-8000-000000000001') ->> 'status', 'pending',
    'author 1: approves (1 of 2)');
select is((api.event_like_groups('e1000000-0000-4000-8000-000000000012') #> '{groups,0}')
          - array['id', 'event_id', 'creator_id', 'created_at', 'member_ids', 'members'],
    '{"status": "pending", "approvals_received": 1, "approvals_needed": 2, "approved_by_me": true,
      "chat_id": null, "decided_at": null}'::jsonb,
    'author 1: the queue shows 1 of 2 approvals, approved by me');
select ok(api.can_subscribe('event:e1000000-0000-4000-8000-000000000012'), 'author: may subscribe to event:{id}');
select test_support.sign_in('b1000000-0000-4000-8000-000000000006', 'liker@example.com');
select ok(not api.can_subscribe('event:e1000000-0000-4000-8000-000000000012'),
    'member of a group: may not subscribe to the event''s queue');
select is(pg_temp.scd(test_support.attempt($$api.event_like_groups('e1000000-0000-4000-8000-000000000012')$$))
          || ' / ' || (test_support.attempt($$api.event_like_groups('e1000000-0000-4000-8000-000000000012')$$) ->> 'message'),
    'raised PT404 / Event not found.', 'member of a group: the queue is "not found"');
select is(pg_temp.scd(test_support.attempt($$api.event_like_groups('e1000000-0000-0000-0000-000000000000')$$))
          || ' / ' || (test_support.attempt($$api.event_like_groups('e1000000-0000-0000-0000-000000000000')$$) ->> 'message'),
    'raised PT404 / Event not found.', 'anyone: an unknown event reads the same');
reset role;

select * from finish();
rollback;
