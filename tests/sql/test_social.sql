-- Friendships (contract section 3, "Social"), actor by actor: alice asks,
-- bob answers, carol asks back, dave is asked and never answers, erin is a
-- stranger to everyone, and anonymous. Display names come from the emails'
-- local parts (the profile trigger).
begin;
select plan(34);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

insert into auth.users (id, email) values
    ('00000000-0000-4000-8000-000000000001', 'alice@example.com'),
    ('00000000-0000-4000-8000-000000000002', 'bob@example.com'),
    ('00000000-0000-4000-8000-000000000003', 'carol@example.com'),
    ('00000000-0000-4000-8000-000000000004', 'dave@example.com'),
    ('00000000-0000-4000-8000-000000000005', 'erin@example.com');

-- ---------------------------------------------------------------------------
-- Alice: asks bob, carol and dave
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000001');

select is(
    api.request_friend('00000000-0000-4000-8000-000000000002'),
    '{"user_id": "00000000-0000-4000-8000-000000000002", "status": "pending"}'::jsonb,
    'alice: request_friend(bob) returns {user_id: bob, status: pending}'
);

select is(
    api.request_friend('00000000-0000-4000-8000-000000000002'),
    '{"user_id": "00000000-0000-4000-8000-000000000002", "status": "pending"}'::jsonb,
    'alice: asking bob a second time leaves the request pending (asking is not accepting)'
);

select is(
    api.request_friend('00000000-0000-4000-8000-000000000003'),
    '{"user_id": "00000000-0000-4000-8000-000000000003", "status": "pending"}'::jsonb,
    'alice: request_friend(carol) is pending'
);

select is(
    api.request_friend('00000000-0000-4000-8000-000000000004'),
    '{"user_id": "00000000-0000-4000-8000-000000000004", "status": "pending"}'::jsonb,
    'alice: request_friend(dave) is pending'
);

select is(
    api.list_friends(),
    jsonb_build_array(
        jsonb_build_object('user_id', '00000000-0000-4000-8000-000000000004', 'display_name', 'dave',
                           'status', 'pending', 'direction', 'outgoing',
                           'created_at', now(), 'accepted_at', null),
        jsonb_build_object('user_id', '00000000-0000-4000-8000-000000000003', 'display_name', 'carol',
                           'status', 'pending', 'direction', 'outgoing',
                           'created_at', now(), 'accepted_at', null),
        jsonb_build_object('user_id', '00000000-0000-4000-8000-000000000002', 'display_name', 'bob',
                           'status', 'pending', 'direction', 'outgoing',
                           'created_at', now(), 'accepted_at', null)),
    'alice: list_friends shows three outgoing pending requests, newest first (one instant here: the user id, descending)'
);

select throws_ok(
    $$select api.accept_friend('00000000-0000-4000-8000-000000000004')$$,
    'PT404', null,
    'alice: accepting her own outgoing request to dave is refused with PT404'
);

select throws_ok(
    $$select api.request_friend('00000000-0000-4000-8000-000000000001')$$,
    '22023', null,
    'alice: a friend request to herself is refused with 22023'
);

select throws_ok(
    $$select api.accept_friend('00000000-0000-4000-8000-000000000001')$$,
    '22023', null,
    'alice: accepting herself is refused with 22023'
);

select throws_ok(
    $$select api.request_friend('00000000-0000-4000-8000-0000000000ff')$$,
    'PT404', null,
    'alice: a friend request to an unknown user is refused with PT404'
);

select throws_ok(
    $$select api.request_friend(null)$$,
    '22023', null,
    'alice: a friend request without a user_id is refused with 22023'
);

-- ---------------------------------------------------------------------------
-- Bob: sees alice's request and accepts it
-- ---------------------------------------------------------------------------

select test_support.sign_in('00000000-0000-4000-8000-000000000002');

select is(
    api.list_friends(),
    jsonb_build_array(
        jsonb_build_object('user_id', '00000000-0000-4000-8000-000000000001', 'display_name', 'alice',
                           'status', 'pending', 'direction', 'incoming',
                           'created_at', now(), 'accepted_at', null)),
    'bob: list_friends shows alice''s request as incoming'
);

select is(
    api.accept_friend('00000000-0000-4000-8000-000000000001'),
    '{"user_id": "00000000-0000-4000-8000-000000000001", "status": "accepted"}'::jsonb,
    'bob: accept_friend(alice) returns {user_id: alice, status: accepted}'
);

select is(
    api.list_friends(),
    jsonb_build_array(
        jsonb_build_object('user_id', '00000000-0000-4000-8000-000000000001', 'display_name', 'alice',
                           'status', 'accepted', 'direction', null,
                           'created_at', now(), 'accepted_at', now())),
    'bob: alice is now a friend, direction null, accepted_at set'
);

select is(
    api.accept_friend('00000000-0000-4000-8000-000000000001'),
    '{"user_id": "00000000-0000-4000-8000-000000000001", "status": "accepted"}'::jsonb,
    'bob: accepting alice again answers accepted and changes nothing'
);

select throws_ok(
    $$select api.accept_friend('00000000-0000-4000-8000-000000000003')$$,
    'PT404', null,
    'bob: accept_friend(carol) with no request between them is refused with PT404'
);

select throws_ok(
    $$select api.accept_friend('00000000-0000-4000-8000-0000000000ff')$$,
    'PT404', null,
    'bob: accept_friend of an unknown user is refused with PT404'
);

-- ---------------------------------------------------------------------------
-- Carol: asks alice back, which makes them friends
-- ---------------------------------------------------------------------------

select test_support.sign_in('00000000-0000-4000-8000-000000000003');

select is(
    api.request_friend('00000000-0000-4000-8000-000000000001'),
    '{"user_id": "00000000-0000-4000-8000-000000000001", "status": "accepted"}'::jsonb,
    'carol: asking alice, who already asked her, answers accepted'
);

select is(
    api.list_friends(),
    jsonb_build_array(
        jsonb_build_object('user_id', '00000000-0000-4000-8000-000000000001', 'display_name', 'alice',
                           'status', 'accepted', 'direction', null,
                           'created_at', now(), 'accepted_at', now())),
    'carol: alice is her friend'
);

select results_eq(
    $$select user_low, user_high, requester_id, status from app.friendships$$,
    $$values ('00000000-0000-4000-8000-000000000001'::uuid, '00000000-0000-4000-8000-000000000003'::uuid,
              '00000000-0000-4000-8000-000000000001'::uuid, 'accepted'::text)$$,
    'carol: reads exactly her one friendship row, still recording alice as the requester'
);

-- ---------------------------------------------------------------------------
-- Alice again: two friends and one outgoing request; then she drops bob
-- ---------------------------------------------------------------------------

select test_support.sign_in('00000000-0000-4000-8000-000000000001');

select is(
    (select jsonb_agg(jsonb_build_object('name', f ->> 'display_name', 'status', f ->> 'status',
                                         'direction', f -> 'direction'))
     from jsonb_array_elements(api.list_friends()) f),
    '[{"name": "dave", "status": "pending", "direction": "outgoing"},
      {"name": "carol", "status": "accepted", "direction": null},
      {"name": "bob", "status": "accepted", "direction": null}]'::jsonb,
    'alice: bob and carol are friends (both directions of acceptance), dave still outgoing'
);

select is(
    api.request_friend('00000000-0000-4000-8000-000000000002'),
    '{"user_id": "00000000-0000-4000-8000-000000000002", "status": "accepted"}'::jsonb,
    'alice: asking a friend again answers accepted'
);

select lives_ok(
    $$select api.remove_friend('00000000-0000-4000-8000-000000000002')$$,
    'alice: remove_friend(bob) succeeds'
);

select is(
    (select jsonb_agg(f ->> 'display_name') from jsonb_array_elements(api.list_friends()) f),
    '["dave", "carol"]'::jsonb,
    'alice: bob is gone from her list'
);

select throws_ok(
    $$select api.remove_friend('00000000-0000-4000-8000-000000000002')$$,
    'PT404', null,
    'alice: removing bob a second time is refused with PT404'
);

-- ---------------------------------------------------------------------------
-- Bob: the removal is mutual
-- ---------------------------------------------------------------------------

select test_support.sign_in('00000000-0000-4000-8000-000000000002');

select is(api.list_friends(), '[]'::jsonb,
    'bob: after alice removed him, his list is empty');

-- ---------------------------------------------------------------------------
-- Dave: declines alice's request by removing it
-- ---------------------------------------------------------------------------

select test_support.sign_in('00000000-0000-4000-8000-000000000004');

select is(
    (select jsonb_agg(jsonb_build_object('user_id', f ->> 'user_id', 'direction', f ->> 'direction'))
     from jsonb_array_elements(api.list_friends()) f),
    '[{"user_id": "00000000-0000-4000-8000-000000000001", "direction": "incoming"}]'::jsonb,
    'dave: alice''s request is incoming'
);

select lives_ok(
    $$select api.remove_friend('00000000-0000-4000-8000-000000000001')$$,
    'dave: remove_friend(alice) declines her pending request'
);

select is(api.list_friends(), '[]'::jsonb,
    'dave: nothing is left after declining');

-- ---------------------------------------------------------------------------
-- Erin: a third user reads nobody else's friendship
-- ---------------------------------------------------------------------------

select test_support.sign_in('00000000-0000-4000-8000-000000000005');

select is((select count(*) from app.friendships), 0::bigint,
    'erin: reads no friendship row of others');

select throws_ok(
    $$insert into app.friendships (user_low, user_high, requester_id, status)
      values ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000005',
              '00000000-0000-4000-8000-000000000005', 'accepted')$$,
    '42501', null,
    'erin: cannot insert an accepted friendship directly'
);

-- ---------------------------------------------------------------------------
-- Anonymous: none of the social functions
-- ---------------------------------------------------------------------------

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select throws_ok(
    $$select api.request_friend('00000000-0000-4000-8000-000000000001')$$,
    '42501', null, 'anon: request_friend raises 42501');
select throws_ok(
    $$select api.accept_friend('00000000-0000-4000-8000-000000000001')$$,
    '42501', null, 'anon: accept_friend raises 42501');
select throws_ok(
    $$select api.remove_friend('00000000-0000-4000-8000-000000000001')$$,
    '42501', null, 'anon: remove_friend raises 42501');
select throws_ok(
    $$select api.list_friends()$$,
    '42501', null, 'anon: list_friends raises 42501');

reset role;

select * from finish();
rollback;
