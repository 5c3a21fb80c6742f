-- Pair registration by invitation (contract section 3, "Pair registration";
-- seed 004): create_pair_invite, join_pair_invite, accept_pair_invite,
-- decline_pair_invite, revoke_pair_invite and my_pair_invites, with their
-- tables' privileges. Actors: the inviter, the invitee (the addressee of an
-- emailed invite), a wrong account trying the emailed invite, a latecomer who
-- holds tokens of invites that later expire, close, are declined or revoked,
-- another user who cannot be registered, a stranger, and anonymous.
--
-- Refusals of counted attempts are answered, not raised: the call sets
-- response.status and returns {code, message, details, hint}.
-- test_support.attempt (tests/sql/support.sql) resets response.status, runs
-- one call and keeps both. The file is one
-- transaction: now() is frozen, and expiry or a passed deadline is made by
-- moving expires_at / registration_deadline into the past as the superuser.
begin;
select plan(83);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

-- The addressee's account spells its email in mixed case; the inviter types it
-- in another mix: the two must match case-insensitively.
insert into auth.users (id, email, raw_user_meta_data) values
    ('a0000000-0000-4000-8000-000000000001', 'inviter@example.com', '{"display_name": "Ines Inviter"}'),
    ('a0000000-0000-4000-8000-000000000002', 'Partner@Example.com', '{"display_name": "Pat Partner"}'),
    ('a0000000-0000-4000-8000-000000000003', 'wrong@example.com', '{}'),
    ('a0000000-0000-4000-8000-000000000004', 'stranger@example.com', '{}'),
    ('a0000000-0000-4000-8000-000000000005', 'late@example.com', '{}'),
    ('a0000000-0000-4000-8000-000000000006', 'other@example.com', '{}'),
    ('a0000000-0000-4000-8000-000000000009', 'organizer@example.com', '{}');

-- One event per situation, made by an organizer who takes no part.
insert into app.events (id, creator_id, title, registration_deadline, capacity, seats_taken, status) values
    ('e0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000009', 'Open Cup',     null,                       10,   0, 'open'),
    ('e0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000009', 'Soon Cup',     now() + interval '2 days',  null, 0, 'open'),
    ('e0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000009', 'Closed Cup',   null,                       null, 0, 'closed'),
    ('e0000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000009', 'Past Cup',     now() - interval '1 hour',  null, 0, 'open'),
    ('e0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000009', 'Crowded Cup',  null,                       3,    2, 'open'),
    ('e0000000-0000-4000-8000-000000000006', 'a0000000-0000-4000-8000-000000000009', 'Solo Cup',     null,                       null, 0, 'open'),
    ('e0000000-0000-4000-8000-000000000007', 'a0000000-0000-4000-8000-000000000009', 'Mail Cup',     now() + interval '30 days', null, 0, 'open'),
    ('e0000000-0000-4000-8000-000000000008', 'a0000000-0000-4000-8000-000000000009', 'Ghost Cup',    now() + interval '30 days', null, 0, 'open'),
    ('e0000000-0000-4000-8000-000000000009', 'a0000000-0000-4000-8000-000000000009', 'Typo Cup',     null,                       null, 0, 'open'),
    ('e0000000-0000-4000-8000-000000000010', 'a0000000-0000-4000-8000-000000000009', 'Stale Cup',    null,                       null, 0, 'open'),
    ('e0000000-0000-4000-8000-000000000011', 'a0000000-0000-4000-8000-000000000009', 'Declined Cup', null,                       10,   0, 'open'),
    ('e0000000-0000-4000-8000-000000000012', 'a0000000-0000-4000-8000-000000000009', 'Revoked Cup',  null,                       null, 0, 'open'),
    ('e0000000-0000-4000-8000-000000000013', 'a0000000-0000-4000-8000-000000000009', 'Taken Cup',    null,                       null, 0, 'open'),
    ('e0000000-0000-4000-8000-000000000014', 'a0000000-0000-4000-8000-000000000009', 'Tight Cup',    null,                       4,    0, 'open');

-- Values carried from one statement to the next.
create temp table vars (name text primary key, value jsonb);
grant all on vars to anon, authenticated;

-- "status code details" of an attempt: response.status ('-' when none was
-- set) and the body's code and details; "raised SQLSTATE" when it raised.
create function pg_temp.scd(a jsonb) returns text
language sql immutable as $$
    select case when a ? 'raised' then 'raised ' || (a ->> 'raised')
                else concat_ws(' ', coalesce(a ->> 'status', '-'), a #>> '{body,code}',
                               a #>> '{body,details}') end
$$;

-- The sorted keys of an object.
create function pg_temp.keys(o jsonb) returns text[]
language sql immutable as $$
    select coalesce(array_agg(k order by k), '{}') from jsonb_object_keys(o) k
$$;

grant execute on function pg_temp.scd(jsonb), pg_temp.keys(jsonb) to anon, authenticated;

-- ---------------------------------------------------------------------------
-- Inviter: creating invites
-- ---------------------------------------------------------------------------

select test_support.sign_in('a0000000-0000-4000-8000-000000000001', 'inviter@example.com');
set local role authenticated;

insert into vars values ('A', test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000001')$$));

select is(
    jsonb_build_object('status', test_support.v('A') -> 'status', 'keys', pg_temp.keys(test_support.v('A') -> 'body')),
    jsonb_build_object('status', null, 'keys', array['expires_at', 'id', 'short_code']),
    'inviter: a code-only invite answers {id, short_code, expires_at} (no token), with no error status'
);

select matches(
    test_support.v('A') #>> '{body,short_code}',
    '^[2-9A-HJKMNP-Z]{8}$',
    'inviter: the short code is 8 characters without look-alikes'
);

select is(
    (test_support.v('A') #>> '{body,expires_at}')::timestamptz,
    now() + interval '7 days',
    'inviter: with no deadline, the invite expires 7 days from now'
);

-- A second invite for the same event revokes the first.
insert into vars values ('B', test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000001')$$));

reset role;

select results_eq(
    format($$select id::text, status, short_code from app.pair_invites
             where event_id = 'e0000000-0000-4000-8000-000000000001' order by created_at, status$$),
    format($$values (%L, 'revoked'::text, %L), (%L, 'sent', %L)$$,
           test_support.v('A') #>> '{body,id}', test_support.v('A') #>> '{body,short_code}',
           test_support.v('B') #>> '{body,id}', test_support.v('B') #>> '{body,short_code}'),
    'inviter: the second invite for the event revoked the first; each row keeps the code it answered'
);

select test_support.sign_in('a0000000-0000-4000-8000-000000000001', 'inviter@example.com');
set local role authenticated;

insert into vars values ('C', test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000002')$$));

select is(
    (test_support.v('C') #>> '{body,expires_at}')::timestamptz,
    now() + interval '2 days',
    'inviter: an invite never outlives the registration deadline (2 days away, not 7)'
);

select is(
    pg_temp.scd(test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000003')$$)),
    '400 PT400 closed',
    'inviter: a closed event is answered 400 closed'
);

select is(
    pg_temp.scd(test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000004')$$)),
    '400 PT400 deadline',
    'inviter: an event whose deadline has passed is answered 400 deadline'
);

select is(
    pg_temp.scd(test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000005')$$)),
    '409 PT409 full',
    'inviter: an event with one free seat (3 seats, 2 taken) is answered 409 full'
);

select is(
    test_support.sc(test_support.attempt($$api.register_for_event('e0000000-0000-4000-8000-000000000006')$$)),
    '-',
    'inviter: registers alone for Solo Cup'
);

select is(
    test_support.sc(test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000006')$$)),
    '409 PT409',
    'inviter: inviting for an event one is already registered for is answered 409'
);

select is(
    test_support.sc(test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000009', 'not an email')$$)),
    '400 PT400',
    'inviter: an invalid email is answered 400'
);

-- Emailed invites: to an address with an account (typed in another case) and
-- to one without.
insert into vars values ('D', test_support.attempt(
    $$api.create_pair_invite('e0000000-0000-4000-8000-000000000007', 'partner@EXAMPLE.com')$$));
insert into vars values ('E', test_support.attempt(
    $$api.create_pair_invite('e0000000-0000-4000-8000-000000000008', 'nobody@example.com')$$));

select is(
    jsonb_build_object('status', test_support.v('D') -> 'status', 'keys', pg_temp.keys(test_support.v('D') -> 'body'),
                       'code_ok', test_support.v('D') #>> '{body,short_code}' ~ '^[2-9A-HJKMNP-Z]{8}$',
                       'rest', (test_support.v('D') -> 'body') - 'id' - 'short_code'),
    jsonb_build_object('status', test_support.v('E') -> 'status', 'keys', pg_temp.keys(test_support.v('E') -> 'body'),
                       'code_ok', test_support.v('E') #>> '{body,short_code}' ~ '^[2-9A-HJKMNP-Z]{8}$',
                       'rest', (test_support.v('E') -> 'body') - 'id' - 'short_code'),
    'inviter: the answer is the same (status, keys, code shape, expiry) whether or not the email has an account'
);

select is(
    pg_temp.keys(test_support.v('D') -> 'body'),
    array['expires_at', 'id', 'short_code'],
    'inviter: an emailed invite answers {id, short_code, expires_at} too, no token'
);

-- Invites whose tokens are used below for expiry, decline, revocation,
-- an invitee already registered and an event without two seats.
insert into vars values ('F', test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000010')$$));
insert into vars values ('G', test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000011')$$));
insert into vars values ('H', test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000012')$$));
insert into vars values ('I', test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000013')$$));
insert into vars values ('J', test_support.attempt($$api.create_pair_invite('e0000000-0000-4000-8000-000000000014')$$));

select is(
    (select array_agg(test_support.sc(value) || ' ' || (value #>> '{body,short_code}' ~ '^[2-9A-HJKMNP-Z]{8}$')
                      order by name)
     from vars where name in ('B', 'C', 'F', 'G', 'H', 'I', 'J')),
    array_fill('- true'::text, array[7]),
    'inviter: the other invites (B, C, F to J) were all created'
);

-- The inviter cannot answer their own invite.
insert into vars values ('T1', test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('B') #>> '{body,short_code}')));

select is(
    pg_temp.scd(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T1') #>> '{body,token}'))),
    '403 42501 own_invite',
    'inviter: accepting one''s own invite is answered 403 own_invite'
);

reset role;

-- The outbox, read as the superuser.
select results_eq(
    format($$select lower(to_email), template, data ->> 'short_code' from app.mail_outbox
             where data ->> 'short_code' = %L$$, test_support.v('D') #>> '{body,short_code}'),
    format($$values ('partner@example.com'::text, 'pair_invite'::text, %L::text)$$,
           test_support.v('D') #>> '{body,short_code}'),
    'outbox: the emailed invite queued exactly one pair_invite message to the addressee, holding the short code'
);

select results_eq(
    format($$select lower(to_email), template, data ->> 'short_code' from app.mail_outbox
             where data ->> 'short_code' = %L$$, test_support.v('E') #>> '{body,short_code}'),
    format($$values ('nobody@example.com'::text, 'pair_invite'::text, %L::text)$$,
           test_support.v('E') #>> '{body,short_code}'),
    'outbox: an email without an account gets its message all the same'
);

select is(
    (select count(*) from app.mail_outbox m
     where m.data ->> 'short_code' in (select value #>> '{body,short_code}' from vars
                                       where name in ('A', 'B', 'C', 'F', 'G', 'H', 'I', 'J'))
        or lower(m.to_email) not in ('partner@example.com', 'nobody@example.com')),
    0::bigint,
    'outbox: code-only invites queued no message'
);

select is(
    (select count(*) from app.pair_invites where event_id = 'e0000000-0000-4000-8000-000000000009'),
    0::bigint,
    'the invalid email created no invite'
);

-- ---------------------------------------------------------------------------
-- Wrong account: a signed-in user who is not the addressee of an emailed invite
-- ---------------------------------------------------------------------------

select test_support.sign_in('a0000000-0000-4000-8000-000000000003', 'wrong@example.com');
set local role authenticated;

insert into vars values ('T3D', test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('D') #>> '{body,short_code}')));

select is(
    pg_temp.scd(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T3D') #>> '{body,token}'))),
    '403 42501 other_addressee',
    'wrong account: accepting an invite emailed to someone else is answered 403 other_addressee'
);

-- A token for the code-only invite, used after the partner has accepted it.
insert into vars values ('T3B', test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('B') #>> '{body,short_code}')));

select is(
    jsonb_build_object('joins', test_support.sc(test_support.v('T3D')) || ', ' || test_support.sc(test_support.v('T3B')),
                       'received', api.my_pair_invites() -> 'received'),
    '{"joins": "-, -", "received": []}'::jsonb,
    'wrong account: got tokens by code, but an invite emailed to another address is not in its received list'
);

reset role;

select is(
    (select count(*) from app.registrations where event_id = 'e0000000-0000-4000-8000-000000000007'),
    0::bigint,
    'wrong account: the refused accept registered nobody'
);

-- ---------------------------------------------------------------------------
-- Latecomer: takes tokens now, answers after things have changed
-- ---------------------------------------------------------------------------

select test_support.sign_in('a0000000-0000-4000-8000-000000000005', 'late@example.com');
set local role authenticated;

insert into vars
select 'T5' || n, test_support.attempt(format('api.join_pair_invite(%L)', test_support.v(n) #>> '{body,short_code}'))
from unnest(array['C', 'F', 'G', 'H']) n;

select is(
    (select array_agg(test_support.sc(value) || ' ' || (length(value #>> '{body,token}') >= 43) order by name)
     from vars where name in ('T5C', 'T5F', 'T5G', 'T5H')),
    array_fill('- true'::text, array[4]),
    'latecomer: joins four open invites by code and gets a token for each'
);

reset role;

-- ---------------------------------------------------------------------------
-- Invitee: the partner, addressee of the emailed invite
-- ---------------------------------------------------------------------------

select test_support.sign_in('a0000000-0000-4000-8000-000000000002', 'Partner@Example.com');
set local role authenticated;

insert into vars values ('my2_before', api.my_pair_invites());

select is(
    (select jsonb_agg(r ->> 'id') from jsonb_array_elements(test_support.v('my2_before') -> 'received') r),
    jsonb_build_array(test_support.v('D') #>> '{body,id}'),
    'invitee: before answering, the received list holds the invite sent to their email (case aside), not the code-only one'
);

-- The code as a person types it: lower case, with spaces and dashes.
insert into vars values ('T2B', test_support.attempt(format('api.join_pair_invite(%L)',
    format(' %s-%s %s ', lower(substr(test_support.v('B') #>> '{body,short_code}', 1, 3)),
                         lower(substr(test_support.v('B') #>> '{body,short_code}', 4, 3)),
                         lower(substr(test_support.v('B') #>> '{body,short_code}', 7, 2))))));

select is(
    (test_support.v('T2B') - 'body') || jsonb_build_object('body', (test_support.v('T2B') -> 'body') - 'token'),
    jsonb_build_object('status', null, 'headers', null, 'body', jsonb_build_object(
        'event', jsonb_build_object('id', 'e0000000-0000-4000-8000-000000000001', 'title', 'Open Cup'),
        'inviter', jsonb_build_object('display_name', 'Ines Inviter'),
        'expires_at', test_support.v('B') #> '{body,expires_at}')),
    'invitee: a lower-case code with spaces and dashes joins: {token, event {id, title}, inviter {display_name}, expires_at}'
);

select ok(
    length(test_support.v('T2B') #>> '{body,token}') >= 43,
    'invitee: the token has at least 43 characters'
);

reset role;

select results_eq(
    format($$select invite_id::text, issued_to from app.pair_invite_tokens
             where token_hash = sha256(convert_to(%L, 'UTF8'))$$, test_support.v('T2B') #>> '{body,token}'),
    format($$values (%L::text, 'a0000000-0000-4000-8000-000000000002'::uuid)$$, test_support.v('B') #>> '{body,id}'),
    'the token is stored as its SHA-256, for the invite and the person it was issued to'
);

select is_empty(
    $$select 1 from app.pair_invite_tokens t, vars v
      where v.value #>> '{body,token}' is not null
        and strpos(to_jsonb(t)::text, v.value #>> '{body,token}') > 0
      union all
      select 1 from app.pair_invites i, vars v
      where v.value #>> '{body,token}' is not null
        and strpos(to_jsonb(i)::text, v.value #>> '{body,token}') > 0$$,
    'no column of app.pair_invite_tokens or app.pair_invites holds any issued token'
);

select test_support.sign_in('a0000000-0000-4000-8000-000000000002', 'Partner@Example.com');
set local role authenticated;

insert into vars values ('acceptB', test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T2B') #>> '{body,token}')));

reset role;

select is(
    jsonb_build_object(
        'status', test_support.v('acceptB') -> 'status',
        'keys', pg_temp.keys(test_support.v('acceptB') -> 'body'),
        'pair_id', test_support.v('acceptB') #> '{body,pair_id}',
        'event_id', test_support.v('acceptB') #> '{body,event_id}',
        'registrations', (select jsonb_agg(r order by r ->> 'user_id')
                          from jsonb_array_elements(test_support.v('acceptB') #> '{body,registrations}') r)),
    jsonb_build_object(
        'status', null,
        'keys', array['event_id', 'pair_id', 'registrations'],
        'pair_id', (select to_jsonb(pair_id) from app.pair_invites
                    where id = (test_support.v('B') #>> '{body,id}')::uuid),
        'event_id', 'e0000000-0000-4000-8000-000000000001',
        'registrations', '[{"user_id": "a0000000-0000-4000-8000-000000000001", "status": "confirmed"},
                           {"user_id": "a0000000-0000-4000-8000-000000000002", "status": "confirmed"}]'::jsonb),
    'invitee: accepting answers {pair_id, event_id, registrations: [{user_id, status}]} for both partners'
);

select results_eq(
    format($$select user_id, status, pair_id::text from app.registrations
             where event_id = 'e0000000-0000-4000-8000-000000000001' order by user_id$$),
    format($$values ('a0000000-0000-4000-8000-000000000001'::uuid, 'confirmed'::text, %1$L::text),
                    ('a0000000-0000-4000-8000-000000000002', 'confirmed', %1$L)$$,
           test_support.v('acceptB') #>> '{body,pair_id}'),
    'invitee: inviter and invitee are both registered, confirmed, with the one pair_id answered'
);

select results_eq(
    format($$select status, invitee_id, pair_id::text, pair_id is not null from app.pair_invites where id = %L$$,
           test_support.v('B') #>> '{body,id}'),
    format($$values ('accepted'::text, 'a0000000-0000-4000-8000-000000000002'::uuid, %L::text, true)$$,
           test_support.v('acceptB') #>> '{body,pair_id}'),
    'invitee: the invite is accepted, with the invitee and the pair recorded'
);

select is(
    (select seats_taken from app.events where id = 'e0000000-0000-4000-8000-000000000001'),
    2,
    'invitee: the pair took two seats'
);

select test_support.sign_in('a0000000-0000-4000-8000-000000000002', 'Partner@Example.com');
set local role authenticated;

select is(
    test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T2B') #>> '{body,token}')),
    test_support.v('acceptB'),
    'invitee: accepting again returns the identical answer'
);

-- The emailed invite: the account's email differs from the typed one in case only.
insert into vars values ('T2D', test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('D') #>> '{body,short_code}')));
-- On Supabase auth.users has email_confirmed_at: an address never confirmed
-- is no one's (anyone may sign up with any address), so it answers nothing.
reset role;
alter table auth.users add column email_confirmed_at timestamptz;
set local role authenticated;
select is(
    pg_temp.scd(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T2D') #>> '{body,token}'))),
    '403 42501 other_addressee',
    'invitee: with auth.users.email_confirmed_at (Supabase), an unconfirmed address is not the addressee: 403 other_addressee'
);
reset role;
update auth.users set email_confirmed_at = now() where id = 'a0000000-0000-4000-8000-000000000002';
set local role authenticated;
insert into vars values ('acceptD', test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T2D') #>> '{body,token}')));

select is(
    jsonb_build_object(
        'status', test_support.v('acceptD') -> 'status',
        'event_id', test_support.v('acceptD') #> '{body,event_id}',
        'users', (select jsonb_agg(r -> 'user_id' order by r ->> 'user_id')
                  from jsonb_array_elements(test_support.v('acceptD') #> '{body,registrations}') r)),
    '{"status": null, "event_id": "e0000000-0000-4000-8000-000000000007",
      "users": ["a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000002"]}'::jsonb,
    'invitee: the addressee accepts the emailed invite (emails compared case-insensitively): both registered'
);

insert into vars values ('my2_after', api.my_pair_invites());

select is(
    (select jsonb_agg(r ->> 'id' order by r ->> 'id') from jsonb_array_elements(test_support.v('my2_after') -> 'received') r),
    (select jsonb_agg(x order by x) from unnest(array[test_support.v('B') #>> '{body,id}', test_support.v('D') #>> '{body,id}']) x),
    'invitee: after answering, the received list also holds the code-only invite (by invitee_id)'
);

select is(
    (select string_agg(coalesce(r ->> 'status', 'null'), ',') from jsonb_array_elements(test_support.v('my2_after') -> 'received') r),
    'accepted,accepted',
    'invitee: both received invites are reported accepted'
);

select is(
    strpos(test_support.v('my2_before')::text || test_support.v('my2_after')::text, '@'),
    0,
    'invitee: the lists show no email address at all (not the inviter''s, not even the invitee''s own)'
);

reset role;

-- ---------------------------------------------------------------------------
-- Wrong account, again: the invite has been accepted by the partner
-- ---------------------------------------------------------------------------

select test_support.sign_in('a0000000-0000-4000-8000-000000000003', 'wrong@example.com');
set local role authenticated;

select is(
    test_support.sc(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T3B') #>> '{body,token}'))),
    '410 PT410',
    'wrong account: accepting an invite someone else accepted is answered 410'
);

reset role;

select is(
    (select array_agg(user_id::text order by user_id) from app.registrations
     where event_id = 'e0000000-0000-4000-8000-000000000001'),
    array['a0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002'],
    'wrong account: the late accept registered nobody more'
);

-- ---------------------------------------------------------------------------
-- Latecomer: the invites have expired, passed the deadline, ...
-- ---------------------------------------------------------------------------

update app.pair_invites set expires_at = now() - interval '1 second'
where id = (test_support.v('F') #>> '{body,id}')::uuid;
update app.events set registration_deadline = now() - interval '1 minute'
where id = 'e0000000-0000-4000-8000-000000000002';

select test_support.sign_in('a0000000-0000-4000-8000-000000000005', 'late@example.com');
set local role authenticated;

select is(
    pg_temp.scd(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T5F') #>> '{body,token}'))),
    '410 PT410 expired',
    'latecomer: accepting an expired invite is answered 410 expired'
);

select is(
    pg_temp.scd(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T5C') #>> '{body,token}'))),
    '410 PT410 deadline',
    'latecomer: accepting after the deadline passed (the invite itself still valid) is answered 410 deadline'
);

-- Declining.
insert into vars values ('declineG', test_support.attempt(format('api.decline_pair_invite(%L)', test_support.v('T5G') #>> '{body,token}')));

select is(
    test_support.v('declineG'),
    jsonb_build_object('status', null, 'headers', null,
                       'body', jsonb_build_object('id', test_support.v('G') #>> '{body,id}', 'status', 'declined')),
    'latecomer: declining answers {id, status: declined}'
);

select is(
    test_support.attempt(format('api.decline_pair_invite(%L)', test_support.v('T5G') #>> '{body,token}')),
    test_support.v('declineG'),
    'latecomer: declining again answers the same'
);

select is(
    test_support.sc(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T5G') #>> '{body,token}'))),
    '410 PT410',
    'latecomer: accepting a declined invite is answered 410'
);

reset role;

select results_eq(
    $$select (select count(*) from app.registrations
              where event_id in ('e0000000-0000-4000-8000-000000000002', 'e0000000-0000-4000-8000-000000000010',
                                 'e0000000-0000-4000-8000-000000000011')),
             (select sum(seats_taken) from app.events
              where id in ('e0000000-0000-4000-8000-000000000002', 'e0000000-0000-4000-8000-000000000010',
                           'e0000000-0000-4000-8000-000000000011'))$$,
    $$values (0::bigint, 0::bigint)$$,
    'latecomer: expired, past-deadline and declined invites registered nobody and took no seat'
);

select results_eq(
    format($$select status, invitee_id from app.pair_invites where id = %L$$, test_support.v('G') #>> '{body,id}'),
    $$values ('declined'::text, 'a0000000-0000-4000-8000-000000000005'::uuid)$$,
    'latecomer: the declined invite records who declined it'
);

-- ---------------------------------------------------------------------------
-- Revoking: a stranger cannot, the inviter can
-- ---------------------------------------------------------------------------

select test_support.sign_in('a0000000-0000-4000-8000-000000000004', 'stranger@example.com');
set local role authenticated;

insert into vars values ('revoke_not_mine', test_support.attempt(
    format('api.revoke_pair_invite(%L)', test_support.v('H') #>> '{body,id}')));
insert into vars values ('revoke_unknown', test_support.attempt(
    $$api.revoke_pair_invite('00000000-0000-4000-8000-00000000dead')$$));
select is(test_support.v('revoke_not_mine'),
    '{"status": "404", "headers": null, "body": {"code": "PT404",
      "message": "Invitation not found.", "details": "not_found", "hint": null}}'::jsonb,
    'stranger: revoking someone else''s invite is 404, answered (not raised)'
);
select is(test_support.v('revoke_unknown'), test_support.v('revoke_not_mine'),
    'stranger: revoking an unknown invite answers exactly the same'
);
select results_eq(
    $$select outcome, status, subject_id from app.audit_log
      where action = 'pair_invite.revoke' and actor_id = 'a0000000-0000-4000-8000-000000000004'
      order by id$$,
    format($$values ('not_allowed'::text, 404, %L::uuid), ('not_found', 404, null)$$,
           test_support.v('H') #>> '{body,id}'),
    'stranger: both attempts are audited, and the audit tells them apart'
);
select is(
    (select hits from app.rate_limit_counters
     where user_id = 'a0000000-0000-4000-8000-000000000004' and bucket = 'revoke_invite'),
    2, 'stranger: both attempts are counted (revoke_invite)'
);

select test_support.sign_in('a0000000-0000-4000-8000-000000000001', 'inviter@example.com');

select is(
    api.revoke_pair_invite((test_support.v('H') #>> '{body,id}')::uuid),
    jsonb_build_object('id', test_support.v('H') #>> '{body,id}', 'status', 'revoked'),
    'inviter: revoking answers {id, status: revoked}'
);

insert into vars values ('my1', api.my_pair_invites());

select is(
    (select jsonb_build_object('short_code', r -> 'short_code', 'invitee_email', r -> 'invitee_email', 'status', r -> 'status')
     from jsonb_array_elements(test_support.v('my1') -> 'sent') r where r ->> 'id' = test_support.v('D') #>> '{body,id}'),
    jsonb_build_object('short_code', test_support.v('D') #> '{body,short_code}', 'invitee_email', 'partner@example.com',
                       'status', 'accepted'),
    'inviter: the sent list shows the short code and the invitee''s email'
);

select is(
    (select jsonb_object_agg(r ->> 'id', r ->> 'status')
     from jsonb_array_elements(test_support.v('my1') -> 'sent') r),
    (select jsonb_object_agg(value #>> '{body,id}', s)
     from vars, (values ('A', 'revoked'), ('B', 'accepted'), ('C', 'sent'), ('D', 'accepted'), ('E', 'sent'),
                        ('F', 'expired'), ('G', 'declined'), ('H', 'revoked'), ('I', 'sent'), ('J', 'sent')) x(n, s)
     where vars.name = x.n),
    'inviter: the sent list holds exactly the ten invites made, the one past expires_at reported expired'
);

select is(
    test_support.v('my1') -> 'received',
    '[]'::jsonb,
    'inviter: nothing received'
);

select test_support.sign_in('a0000000-0000-4000-8000-000000000005', 'late@example.com');

select is(
    pg_temp.scd(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T5H') #>> '{body,token}'))),
    '410 PT410 revoked',
    'latecomer: accepting a revoked invite is answered 410'
);

select is(
    (select jsonb_agg(jsonb_build_object('id', r -> 'id', 'status', r -> 'status'))
     from jsonb_array_elements(api.my_pair_invites() -> 'received') r),
    jsonb_build_array(jsonb_build_object('id', test_support.v('G') #>> '{body,id}', 'status', 'declined')),
    'latecomer: the received list holds the invite they declined, and no invite they only looked at'
);

reset role;

-- ---------------------------------------------------------------------------
-- Other user: cannot be registered twice; no two seats left
-- ---------------------------------------------------------------------------

select test_support.sign_in('a0000000-0000-4000-8000-000000000006', 'other@example.com');
set local role authenticated;

select is(
    test_support.sc(test_support.attempt($$api.register_for_event('e0000000-0000-4000-8000-000000000013')$$)),
    '-',
    'other: registers alone for Taken Cup'
);

insert into vars values ('T6I', test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('I') #>> '{body,short_code}')));

select is(
    test_support.sc(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T6I') #>> '{body,token}'))),
    '409 PT409',
    'other: accepting an invite for an event one is already registered for is answered 409'
);

reset role;

update app.events set seats_taken = 3 where id = 'e0000000-0000-4000-8000-000000000014';

select test_support.sign_in('a0000000-0000-4000-8000-000000000006', 'other@example.com');
set local role authenticated;

insert into vars values ('T6J', test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('J') #>> '{body,short_code}')));

select is(
    pg_temp.scd(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('T6J') #>> '{body,token}'))),
    '409 PT409 full',
    'other: accepting when only one seat is left is answered 409 full'
);

reset role;

select results_eq(
    $$select (select count(*) from app.registrations where event_id = 'e0000000-0000-4000-8000-000000000014'),
             (select seats_taken from app.events where id = 'e0000000-0000-4000-8000-000000000014'),
             (select count(*) from app.registrations where event_id = 'e0000000-0000-4000-8000-000000000013'),
             (select seats_taken from app.events where id = 'e0000000-0000-4000-8000-000000000013')$$,
    $$values (0::bigint, 3, 1::bigint, 1)$$,
    'other: the refused accepts registered nobody and took no seat'
);

select results_eq(
    format($$select status, invitee_id from app.pair_invites where id in (%L, %L) order by id$$,
           test_support.v('I') #>> '{body,id}', test_support.v('J') #>> '{body,id}'),
    $$values ('sent'::text, null::uuid), ('sent', null)$$,
    'other: the refused invites stay open'
);

-- ---------------------------------------------------------------------------
-- Stranger: one generic 404 for every code that leads nowhere; sees nothing
-- ---------------------------------------------------------------------------

select test_support.sign_in('a0000000-0000-4000-8000-000000000004', 'stranger@example.com');
set local role authenticated;

insert into vars values ('unknown', test_support.attempt($$api.join_pair_invite('ZZZZ2222')$$));
insert into vars values ('expired', test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('F') #>> '{body,short_code}')));
insert into vars values ('revoked', test_support.attempt(format('api.join_pair_invite(%L)', test_support.v('A') #>> '{body,short_code}')));

select is(
    test_support.sc(test_support.v('unknown')),
    '404 PT404',
    'stranger: an unknown code is answered 404'
);

select is(
    jsonb_build_array(test_support.v('expired'), test_support.v('revoked')),
    jsonb_build_array(test_support.v('unknown'), test_support.v('unknown')),
    'stranger: expired and revoked codes get the very same answer as an unknown one (status and whole body)'
);

select is(
    api.my_pair_invites(),
    '{"sent": [], "received": []}'::jsonb,
    'stranger: both lists are empty'
);

select is(
    (select count(*) from app.pair_invites),
    0::bigint,
    'stranger: selecting app.pair_invites shows no row'
);

select throws_ok(
    'select count(*) from app.pair_invite_tokens',
    '42501', null,
    'stranger: app.pair_invite_tokens is not readable at all (42501)'
);

select is(
    (select count(*) from app.registrations),
    0::bigint,
    'stranger: selecting app.registrations shows no row'
);

select throws_ok(
    $$insert into app.registrations (event_id, user_id)
      values ('e0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000004')$$,
    '42501', null,
    'stranger: cannot insert a registration directly'
);

select throws_ok(
    $$insert into app.pair_invites (event_id, inviter_id, short_code, expires_at)
      values ('e0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000004', 'ABCDEFGH', now() + interval '1 day')$$,
    '42501', null,
    'stranger: cannot insert an invite directly'
);

select throws_ok(
    $$insert into app.pair_invite_tokens (token_hash, invite_id, issued_to)
      select sha256('forged'), id, 'a0000000-0000-4000-8000-000000000004' from app.pair_invites$$,
    '42501', null,
    'stranger: cannot insert a token directly'
);

-- A partner, who can read their own rows, cannot change them either.
select test_support.sign_in('a0000000-0000-4000-8000-000000000001', 'inviter@example.com');

select results_eq(
    $$select count(*), count(*) filter (where user_id <> 'a0000000-0000-4000-8000-000000000001')
      from app.registrations$$,
    $$values (3::bigint, 0::bigint)$$,
    'inviter: app.registrations shows their own three registrations and nobody else''s (not even the partner''s)'
);

select throws_ok(
    $$update app.registrations set status = 'cancelled'
      where user_id = 'a0000000-0000-4000-8000-000000000001'$$,
    '42501', null,
    'inviter: cannot update registrations directly'
);

select throws_ok(
    $$update app.pair_invites set expires_at = now() + interval '1 year'$$,
    '42501', null,
    'inviter: cannot update their invites directly'
);

select throws_ok(
    $$delete from app.pair_invites$$,
    '42501', null,
    'inviter: cannot delete their invites directly'
);

reset role;

-- ---------------------------------------------------------------------------
-- Anonymous: no function of the flow is callable
-- ---------------------------------------------------------------------------

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select throws_ok($$select api.create_pair_invite('e0000000-0000-4000-8000-000000000001')$$,
    '42501', null, 'anon: create_pair_invite is refused (42501)');
select throws_ok(format('select api.join_pair_invite(%L)', test_support.v('C') #>> '{body,short_code}'),
    '42501', null, 'anon: join_pair_invite is refused (42501)');
select throws_ok(format('select api.accept_pair_invite(%L)', test_support.v('T6J') #>> '{body,token}'),
    '42501', null, 'anon: accept_pair_invite is refused (42501)');
select throws_ok(format('select api.decline_pair_invite(%L)', test_support.v('T6J') #>> '{body,token}'),
    '42501', null, 'anon: decline_pair_invite is refused (42501)');
select throws_ok(format('select api.revoke_pair_invite(%L)', test_support.v('J') #>> '{body,id}'),
    '42501', null, 'anon: revoke_pair_invite is refused (42501)');
select throws_ok('select api.my_pair_invites()',
    '42501', null, 'anon: my_pair_invites is refused (42501)');

reset role;

-- ---------------------------------------------------------------------------
-- The audit log (as the superuser)
-- ---------------------------------------------------------------------------

select results_eq(
    $$select action, status, count(*) from app.audit_log
      where actor_id = 'a0000000-0000-4000-8000-000000000005'
      group by action, status order by action, status$$,
    $$values ('pair_invite.accept'::text, 410, 4::bigint),
             ('pair_invite.decline', 200, 2::bigint),
             ('pair_invite.join', 200, 4::bigint)$$,
    'latecomer: every join, accept and decline attempt left an audit row'
);

select is_empty(
    $$select a.id from app.audit_log a, vars v
      where (v.value #>> '{body,token}' is not null
             and strpos(to_jsonb(a)::text, v.value #>> '{body,token}') > 0)
         or (v.value #>> '{body,short_code}' is not null
             and strpos(to_jsonb(a)::text, v.value #>> '{body,short_code}') > 0)$$,
    'no audit row holds a token or a short code'
);

select * from finish();
rollback;
