-- api.preview_pair_invite: what the page behind an invitation link shows
-- before anyone clicks. It issues no token and answers nothing; it records
-- what any attempt with a code records (one 'join_code' rate-limit hit, one
-- audit entry). Actors: the invitee, the inviter (own link), anonymous.
begin;
select plan(16);

insert into auth.users (id, email, raw_user_meta_data) values
    ('b0000000-0000-4000-8000-000000000001', 'host@example.com', '{"display_name": "Hana Host"}'),
    ('b0000000-0000-4000-8000-000000000002', 'guest@example.com', '{}'),
    ('b0000000-0000-4000-8000-000000000003', 'late@example.com', '{}');
insert into app.events (id, creator_id, title, registration_deadline, capacity) values
    ('f0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000001', 'Preview Cup',
     now() + interval '3 days', 10);
insert into app.pair_invites (id, event_id, inviter_id, short_code, expires_at) values
    ('c0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001',
     'b0000000-0000-4000-8000-000000000001', 'PREV2345', now() + interval '2 days'),
    ('c0000000-0000-4000-8000-000000000002', 'f0000000-0000-4000-8000-000000000001',
     'b0000000-0000-4000-8000-000000000003', 'GAME2345', now() - interval '1 minute');
-- Their codes' routes, as create_pair_invite writes them (migration 0040).
insert into app.pair_code_routes (short_code, event_id)
select short_code, event_id from app.pair_invites where short_code in ('PREV2345', 'GAME2345');
update app.rate_limits set max_attempts = 5 where bucket = 'join_code';

create temp table vars (name text primary key, value jsonb);
grant all on vars to anon, authenticated;

-- The invitee, typing the code in lower case with a dash.
set local role authenticated;
select test_support.sign_in('b0000000-0000-4000-8000-000000000002');
insert into vars values ('P', test_support.attempt($$api.preview_pair_invite('prev-2345')$$));
select is(test_support.v('P') ->> 'status', null, 'a preview answers 200');
select is(test_support.v('P') -> 'body',
    jsonb_build_object(
        'event', jsonb_build_object('id', 'f0000000-0000-4000-8000-000000000001', 'title', 'Preview Cup',
            'registration_deadline', now() + interval '3 days'),
        'inviter', jsonb_build_object('display_name', 'Hana Host'),
        'expires_at', now() + interval '2 days',
        'own_invite', false),
    'it shows the event, the inviter and the expiry, and no token');
reset role;

select is((select count(*)::int from app.pair_invite_tokens
           where invite_id = 'c0000000-0000-4000-8000-000000000001'), 0, 'no token was issued');
select is((select status from app.pair_invites where short_code = 'PREV2345'), 'sent',
    'the invite is unchanged');
select is((select hits from app.rate_limit_counters
           where user_id = 'b0000000-0000-4000-8000-000000000002' and bucket = 'join_code'), 1,
    'one join_code hit');
select results_eq(
    $$select action, outcome, status, subject_id from app.audit_log
      where actor_id = 'b0000000-0000-4000-8000-000000000002' order by id$$,
    $$values ('pair_invite.preview', 'shown', 200, 'c0000000-0000-4000-8000-000000000001'::uuid)$$,
    'one audit entry, without the code');

-- Unknown and expired codes: the generic 404, audited.
set local role authenticated;
select test_support.sign_in('b0000000-0000-4000-8000-000000000002');
insert into vars values ('U', test_support.attempt($$api.preview_pair_invite('ZZZZ2222')$$));
insert into vars values ('E', test_support.attempt($$api.preview_pair_invite('GAME2345')$$));
select is(test_support.v('U') ->> 'status', '404', 'an unknown code: 404');
select is(test_support.v('U') -> 'body',
    '{"code": "PT404", "message": "No open invitation with this code.", "details": "not_found", "hint": null}'::jsonb,
    'with the body join_pair_invite gives');
select is(test_support.v('E') -> 'body', test_support.v('U') -> 'body', 'an expired code: the same');

-- The inviter's own link.
select test_support.sign_in('b0000000-0000-4000-8000-000000000001');
select is(test_support.attempt($$api.preview_pair_invite('PREV2345')$$) #> '{body,own_invite}',
    'true'::jsonb, 'the inviter sees own_invite');

-- The limit: five attempts a minute here; the invitee has made three.
select test_support.sign_in('b0000000-0000-4000-8000-000000000002');
select is(test_support.attempt($$api.preview_pair_invite('PREV2345')$$) ->> 'status', null, 'fourth');
select is(test_support.attempt($$api.preview_pair_invite('PREV2345')$$) ->> 'status', null, 'fifth');
insert into vars values ('L', test_support.attempt($$api.preview_pair_invite('PREV2345')$$));
select is(test_support.v('L') ->> 'status', '429', 'the sixth is rate limited');
select ok((test_support.v('L') -> 'headers') @> '[{"Retry-After": "60"}]'::jsonb
          or (test_support.v('L') #>> '{headers,0,Retry-After}')::int between 1 and 60,
    'with Retry-After');
reset role;

-- Anonymous callers may not preview (the limit is per person).
set local role anon;
select is(test_support.attempt($$api.preview_pair_invite('PREV2345')$$) ->> 'raised', '42501',
    'anon cannot call it');
reset role;
select is((select count(*)::int from app.pair_invite_tokens), 0, 'still no token at all');

select * from finish();
rollback;
