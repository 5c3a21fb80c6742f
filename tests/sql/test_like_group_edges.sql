-- Like groups: the edge cases of the approval threshold (contract section 3,
-- Rules; seed "Approval algorithm -> edge cases"). The threshold is
-- min(authors, members) and only current authors' approvals count, so
-- removing a member or an author re-evaluates the group in that same call.
--   (a) a member's removal lowers the threshold and approves the group
--   (b) removing an author whose approval was the deciding one does not
--       approve; removing another author can
--   (c) an author's second approval counts once
--   (d) approving a rejected group is refused
--   (e) get_like_group reports approvals_received / approvals_needed
--   (f) re-adding a removed author never leaves a pending group at or over
--       its threshold
-- Actors: the events' creators (a1, b1, c1, d1), other authors, the groups'
-- creators and members.
begin;
select plan(46);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

create temp table people (name text primary key, id uuid not null unique);
insert into people values
    -- event A: three authors; group ga of three
    ('a1',  '00000000-0000-4000-8000-000000000a01'),
    ('a2',  '00000000-0000-4000-8000-000000000a02'),
    ('a3',  '00000000-0000-4000-8000-000000000a03'),
    ('ga',  '00000000-0000-4000-8000-000000000a11'),
    ('ga2', '00000000-0000-4000-8000-000000000a12'),
    ('ga3', '00000000-0000-4000-8000-000000000a13'),
    -- event B: two authors; groups gp and gq of three each
    ('b1',  '00000000-0000-4000-8000-000000000b01'),
    ('b2',  '00000000-0000-4000-8000-000000000b02'),
    ('gp',  '00000000-0000-4000-8000-000000000b11'),
    ('gp2', '00000000-0000-4000-8000-000000000b12'),
    ('gp3', '00000000-0000-4000-8000-000000000b13'),
    ('gq',  '00000000-0000-4000-8000-000000000b21'),
    ('gq2', '00000000-0000-4000-8000-000000000b22'),
    ('gq3', '00000000-0000-4000-8000-000000000b23'),
    -- event C: two authors; group gx of two
    ('c1',  '00000000-0000-4000-8000-000000000c01'),
    ('c2',  '00000000-0000-4000-8000-000000000c02'),
    ('gx',  '00000000-0000-4000-8000-000000000c11'),
    ('gx2', '00000000-0000-4000-8000-000000000c12'),
    -- event D: three authors; group gz of two
    ('d1',  '00000000-0000-4000-8000-000000000d01'),
    ('d2',  '00000000-0000-4000-8000-000000000d02'),
    ('d3',  '00000000-0000-4000-8000-000000000d03'),
    ('gz',  '00000000-0000-4000-8000-000000000d11'),
    ('gz2', '00000000-0000-4000-8000-000000000d12');
insert into auth.users (id, email) select id, name || '@example.com' from people;

-- Each group's creator is friends with its members.
insert into app.friendships (user_low, user_high, requester_id, status)
select least(c.id, m.id), greatest(c.id, m.id), c.id, 'accepted'
from people c join people m on m.name like c.name || '_'
where c.name in ('ga', 'gp', 'gq', 'gx', 'gz');

create temp table vars (name text primary key, value jsonb);

-- What get_like_group reports about a stored group's decision, as the caller:
-- {status, approvals_received, approvals_needed}.
create function pg_temp.tally(text) returns jsonb
language sql as $$
    select jsonb_build_object('status', g -> 'status', 'approvals_received', g -> 'approvals_received',
                              'approvals_needed', g -> 'approvals_needed')
    from api.get_like_group(test_support.id($1)) g
$$;

grant select on people to authenticated;
grant all on vars to authenticated;
grant execute on function pg_temp.tally(text) to authenticated;

set local role authenticated;

-- ---------------------------------------------------------------------------
-- (a) A member's removal lowers the threshold and approves the group
-- ---------------------------------------------------------------------------

select test_support.login('a1');
insert into vars values ('event_a', api.create_event('Event A'));
select '# added ' || (api.add_event_author(test_support.id('event_a'), test_support.u('a2')) ->> 'title');
select '# added ' || (api.add_event_author(test_support.id('event_a'), test_support.u('a3')) ->> 'title');

select test_support.login('ga');
insert into vars values ('ga', api.like_event(test_support.id('event_a'), test_support.us('ga2', 'ga3')));

select is(
    pg_temp.tally('ga'),
    '{"status": "pending", "approvals_received": 0, "approvals_needed": 3}'::jsonb,
    '(a) ga: 3 authors, 3 members: needed min(3, 3) = 3, none received'
);

select test_support.login('a2');

select is(
    api.approve_like_group(test_support.id('ga')),
    jsonb_build_object('id', test_support.id('ga'), 'status', 'pending', 'chat_id', null),
    '(a) a2: the first approval leaves the group pending'
);

-- (c) the same author approving a second time changes nothing
select is(
    api.approve_like_group(test_support.id('ga')),
    jsonb_build_object('id', test_support.id('ga'), 'status', 'pending', 'chat_id', null),
    '(c) a2: a second approval by the same author answers pending'
);

select is(
    pg_temp.tally('ga'),
    '{"status": "pending", "approvals_received": 1, "approvals_needed": 3}'::jsonb,
    '(c) a2: approvals_received stays 1 after the second approval'
);

select is(
    (select count(*) from app.like_group_approvals where group_id = test_support.id('ga')),
    1::bigint,
    '(c) a2: one row in app.like_group_approvals for the two approvals'
);

select is(
    jsonb_array_length(api.list_like_group_approvals(test_support.id('ga'))),
    1,
    '(c) a2: list_like_group_approvals shows one approval'
);

select test_support.login('a3');

select is(
    api.approve_like_group(test_support.id('ga')) ->> 'status',
    'pending',
    '(a) a3: the second author''s approval (2 of 3) leaves the group pending'
);

select is(
    pg_temp.tally('ga'),
    '{"status": "pending", "approvals_received": 2, "approvals_needed": 3}'::jsonb,
    '(a)(e) a3: get_like_group reports 2 of 3'
);

select test_support.login('ga');

insert into vars values ('ga_after_removal', api.remove_like_group_member(test_support.id('ga'), test_support.u('ga3')));

select is(
    test_support.v('ga_after_removal') - 'id' - 'event_id' - 'creator_id' - 'created_at' - 'chat_id',
    jsonb_build_object('status', 'approved', 'member_ids', to_jsonb(test_support.us('ga', 'ga2')),
                       'approvals_received', 2, 'approvals_needed', 2),
    '(a) ga: removing ga3 makes needed min(3, 2) = 2 and approves the group in that same call'
);

select isnt(test_support.v('ga_after_removal') -> 'chat_id', 'null'::jsonb,
    '(a) ga: the group returned by the removal carries its new chat_id');

reset role;

select results_eq(
    format($$select id::text, type from app.chats where like_group_id = %L$$, test_support.id('ga')),
    format($$values (%L, 'approved_group')$$, test_support.v('ga_after_removal') ->> 'chat_id'),
    '(a) the removal created exactly one approved_group chat'
);

select bag_eq(
    format($$select p.user_id from app.chat_participants p join app.chats c on c.id = p.chat_id
             where c.like_group_id = %L$$, test_support.id('ga')),
    $$select id from people where name in ('ga', 'ga2', 'a1', 'a2', 'a3')$$,
    '(a) the chat''s participants: the 2 remaining members and the 3 authors, not the removed ga3'
);

select bag_eq(
    format($$select user_id, data from app.notifications where type = 'group_approved'
             and data ->> 'group_id' = %L$$, test_support.id('ga')),
    format($$select id, jsonb_build_object('group_id', %L::uuid, 'event_id', %L::uuid, 'chat_id', %L::uuid)
             from people where name in ('ga', 'ga2')$$,
           test_support.id('ga'), test_support.id('event_a'), test_support.v('ga_after_removal') ->> 'chat_id'),
    '(a) one group_approved notification for each remaining member, none for ga3'
);

select is(
    (select status from app.like_groups where id = test_support.id('ga')),
    'approved',
    '(a) the stored status is approved'
);

-- ---------------------------------------------------------------------------
-- (b) Removing an author: only current authors' approvals count
-- ---------------------------------------------------------------------------

set local role authenticated;

select test_support.login('b1');
insert into vars values ('event_b', api.create_event('Event B'));
select '# added ' || (api.add_event_author(test_support.id('event_b'), test_support.u('b2')) ->> 'title');

select test_support.login('gp');
insert into vars values ('gp', api.like_event(test_support.id('event_b'), test_support.us('gp2', 'gp3')));
select test_support.login('gq');
insert into vars values ('gq', api.like_event(test_support.id('event_b'), test_support.us('gq2', 'gq3')));

-- gp: b2 approves (1 of 2). gq: b1 approves (1 of 2).
select test_support.login('b2');

select is(
    api.approve_like_group(test_support.id('gp')) ->> 'status',
    'pending',
    '(b) b2: approving gp gives 1 of min(2, 3) = 2: pending'
);

select test_support.login('b1');

select is(
    api.approve_like_group(test_support.id('gq')) ->> 'status',
    'pending',
    '(b) b1: approving gq gives 1 of 2: pending'
);

select is(
    pg_temp.tally('gp'),
    '{"status": "pending", "approvals_received": 1, "approvals_needed": 2}'::jsonb,
    '(b)(e) b1: gp reports 1 of 2 before the removal'
);

select is(
    pg_temp.tally('gq'),
    '{"status": "pending", "approvals_received": 1, "approvals_needed": 2}'::jsonb,
    '(b)(e) b1: gq reports 1 of 2 before the removal'
);

select is(
    api.remove_event_author(test_support.id('event_b'), test_support.u('b2')) -> 'author_ids',
    to_jsonb(test_support.us('b1')),
    '(b) b1: remove_event_author(b2) leaves b1 the only author'
);

select is(
    pg_temp.tally('gp'),
    '{"status": "pending", "approvals_received": 0, "approvals_needed": 1}'::jsonb,
    '(b) b1: gp, approved only by the removed b2, stays pending: needed min(1, 3) = 1, received 0'
);

select is(
    pg_temp.tally('gq'),
    '{"status": "approved", "approvals_received": 1, "approvals_needed": 1}'::jsonb,
    '(b) b1: gq, approved by b1, is approved by remove_event_author: needed 1, received 1'
);

select is(
    (select jsonb_agg(a -> 'author_id') from jsonb_array_elements(api.list_like_group_approvals(test_support.id('gp'))) a),
    to_jsonb(test_support.us('b2')),
    '(b) b1: gp''s list still shows b2''s approval, which no longer counts'
);

reset role;

select is(
    (select count(*) from app.chats where like_group_id = test_support.id('gp')),
    0::bigint,
    '(b) gp has no chat'
);

select is(
    (select count(*) from app.notifications where data ->> 'group_id' = test_support.id('gp')::text),
    0::bigint,
    '(b) gp''s members got no notification'
);

select bag_eq(
    format($$select p.user_id from app.chat_participants p join app.chats c on c.id = p.chat_id
             where c.like_group_id = %L and c.type = 'approved_group'$$, test_support.id('gq')),
    $$select id from people where name in ('gq', 'gq2', 'gq3', 'b1')$$,
    '(b) gq''s chat: its 3 members and the one current author, not the removed b2'
);

select bag_eq(
    format($$select user_id from app.notifications where type = 'group_approved'
             and data ->> 'group_id' = %L and data ->> 'chat_id' is not null$$, test_support.id('gq')),
    $$select id from people where name in ('gq', 'gq2', 'gq3')$$,
    '(b) one group_approved notification for each of gq''s members'
);

select results_eq(
    format($$select count(*) filter (where pending) from app.like_group_members where group_id = %L
             union all
             select count(*) filter (where pending) from app.like_group_members where group_id = %L$$,
           test_support.id('gp'), test_support.id('gq')),
    $$values (3::bigint), (0::bigint)$$,
    '(b) gp''s members are still pending, gq''s are not'
);

set local role authenticated;
select test_support.login('b2');

select throws_ok(
    format('select api.approve_like_group(%L)', test_support.id('gp')),
    '42501', null,
    '(b) b2: a removed author can no longer approve (42501)'
);

select test_support.login('b1');

select is(
    api.approve_like_group(test_support.id('gp')) - 'chat_id',
    jsonb_build_object('id', test_support.id('gp'), 'status', 'approved'),
    '(b) b1: the one current author''s approval now approves gp (1 of 1)'
);

-- ---------------------------------------------------------------------------
-- (c), (d) Second approvals and decided groups
-- ---------------------------------------------------------------------------

select test_support.login('c1');
insert into vars values ('event_c', api.create_event('Event C'));
select '# added ' || (api.add_event_author(test_support.id('event_c'), test_support.u('c2')) ->> 'title');

select test_support.login('gx');
insert into vars values ('gx', api.like_event(test_support.id('event_c'), test_support.us('gx2')));

select test_support.login('c2');

select is(api.approve_like_group(test_support.id('gx')) ->> 'status', 'pending',
    '(c) c2: first approval of gx: 1 of min(2, 2) = 2, pending');
select is(api.approve_like_group(test_support.id('gx')) ->> 'status', 'pending',
    '(c) c2: approving gx again is still pending: it does not count as the second approval');
select is(api.approve_like_group(test_support.id('gx')) ->> 'status', 'pending',
    '(c) c2: and a third time, still pending');

select is(
    pg_temp.tally('gx'),
    '{"status": "pending", "approvals_received": 1, "approvals_needed": 2}'::jsonb,
    '(c)(e) c2: gx reports 1 of 2 after three approvals by the same author'
);

select test_support.login('c1');

select is(
    api.reject_like_group(test_support.id('gx')),
    jsonb_build_object('id', test_support.id('gx'), 'status', 'rejected'),
    '(d) c1: one rejection rejects gx despite c2''s approval'
);

select test_support.login('c2');

select throws_ok(
    format('select api.approve_like_group(%L)', test_support.id('gx')),
    'PT400', null,
    '(d) c2: approving a rejected group raises PT400'
);

select is(
    pg_temp.tally('gx') ->> 'status',
    'rejected',
    '(d) c2: the group is still rejected after the refused approval'
);

reset role;

select results_eq(
    format($$select author_id, approved from app.like_group_approvals where group_id = %L
             order by author_id$$, test_support.id('gx')),
    format($$values (%L::uuid, false), (%L::uuid, true)$$, test_support.u('c1'), test_support.u('c2')),
    '(c)(d) gx has exactly two decisions: c1''s rejection and c2''s one approval'
);

select is(
    (select count(*) from app.chats where like_group_id = test_support.id('gx')),
    0::bigint,
    '(d) the rejected group has no chat'
);

-- ---------------------------------------------------------------------------
-- (f) A removed author comes back
-- ---------------------------------------------------------------------------

set local role authenticated;

select test_support.login('d1');
insert into vars values ('event_d', api.create_event('Event D'));
select '# added ' || (api.add_event_author(test_support.id('event_d'), test_support.u('d2')) ->> 'title');
select '# added ' || (api.add_event_author(test_support.id('event_d'), test_support.u('d3')) ->> 'title');

select test_support.login('gz');
insert into vars values ('gz', api.like_event(test_support.id('event_d'), test_support.us('gz2')));

select test_support.login('d3');
select is(api.approve_like_group(test_support.id('gz')) ->> 'status', 'pending',
    '(f) d3: 1 of min(3, 2) = 2: pending');

select test_support.login('d1');

select is(
    api.remove_event_author(test_support.id('event_d'), test_support.u('d3')) -> 'author_ids',
    to_jsonb(test_support.us('d1', 'd2')),
    '(f) d1: removes d3'
);

select is(
    pg_temp.tally('gz'),
    '{"status": "pending", "approvals_received": 0, "approvals_needed": 2}'::jsonb,
    '(f) d1: without d3, gz has 0 of min(2, 2) = 2'
);

select is(api.approve_like_group(test_support.id('gz')) ->> 'status', 'pending',
    '(f) d1: 1 of 2: pending');

select is(
    api.add_event_author(test_support.id('event_d'), test_support.u('d3')) -> 'author_ids',
    to_jsonb(test_support.us('d1', 'd2', 'd3')),
    '(f) d1: adds d3 back'
);

-- Now needed = min(3, 2) = 2. Whether d3's earlier approval counts again or
-- was dropped with the removal, a pending group must not report received >=
-- needed: the contract approves a group as soon as current authors'
-- approvals reach the threshold.
select diag('gz after d3 is re-added: ' || pg_temp.tally('gz')::text);

select ok(
    (select (t ->> 'status') = 'approved'
            or (t ->> 'approvals_received')::int < (t ->> 'approvals_needed')::int
     from pg_temp.tally('gz') t),
    '(f) d1: after d3 is re-added, gz is approved or reports fewer approvals than needed'
);

-- like_group_json may count approvals in its own query rather than call
-- private.like_group_tally (for speed); over every like group above, the two agree.
reset role;
select is_empty(
    $$select g.id from app.like_groups g
      cross join lateral private.like_group_tally(g.id, g.event_id) t
      where (private.like_group_json(g.id) ->> 'approvals_received')::int
                is distinct from t.received
         or (private.like_group_json(g.id) ->> 'approvals_needed')::int
                is distinct from t.needed$$,
    'like_group_json reports the counts of like_group_tally for every like group'
);
select cmp_ok((select count(*)::int from app.like_groups), '>=', 5,
    'like groups in several states were compared');

select * from finish();
rollback;
