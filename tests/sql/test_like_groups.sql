-- Like groups and author approval (contract section 3, "Events, like groups,
-- chats, notifications" and its Rules), actor by actor: the event's creator
-- (host) and its second author (cohost), a group creator (leader) with ten
-- friends (f01..f10), a rival who competes for the same event, an outsider
-- who only has a pending request to the leader, a stranger, and anonymous.
begin;
select plan(100);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

create temp table people (name text primary key, id uuid not null unique);
insert into people values
    ('host',     '00000000-0000-4000-8000-000000000001'),
    ('cohost',   '00000000-0000-4000-8000-000000000002'),
    ('leader',   '00000000-0000-4000-8000-000000000003'),
    ('stranger', '00000000-0000-4000-8000-000000000004'),
    ('outsider', '00000000-0000-4000-8000-000000000005'),
    ('rival',    '00000000-0000-4000-8000-000000000006'),
    ('f01',      '00000000-0000-4000-8000-000000000011'),
    ('f02',      '00000000-0000-4000-8000-000000000012'),
    ('f03',      '00000000-0000-4000-8000-000000000013'),
    ('f04',      '00000000-0000-4000-8000-000000000014'),
    ('f05',      '00000000-0000-4000-8000-000000000015'),
    ('f06',      '00000000-0000-4000-8000-000000000016'),
    ('f07',      '00000000-0000-4000-8000-000000000017'),
    ('f08',      '00000000-0000-4000-8000-000000000018'),
    ('f09',      '00000000-0000-4000-8000-000000000019'),
    ('f10',      '00000000-0000-4000-8000-000000000020');
insert into auth.users (id, email) select id, name || '@example.com' from people;

-- Friendships: the leader and f01..f10; the rival and f01, f10. The outsider
-- has only asked the leader (pending, not a friend).
insert into app.friendships (user_low, user_high, requester_id, status)
select least(l.id, f.id), greatest(l.id, f.id), l.id, 'accepted'
from people l, people f
where l.name = 'leader' and f.name like 'f__';
insert into app.friendships (user_low, user_high, requester_id, status)
select least(r.id, f.id), greatest(r.id, f.id), r.id, 'accepted'
from people r, people f
where r.name = 'rival' and f.name in ('f01', 'f10');
insert into app.friendships (user_low, user_high, requester_id, status)
select least(o.id, l.id), greatest(o.id, l.id), o.id, 'pending'
from people o, people l
where o.name = 'outsider' and l.name = 'leader';

-- Values carried from one statement to the next: name -> the JSON a call returned.
create temp table vars (name text primary key, value jsonb);

-- member_ids as a JSON array of the named users, in the order given.
create function pg_temp.ids_json(variadic text[]) returns jsonb
language sql stable as $$ select to_jsonb(test_support.us(variadic $1)) $$;

grant select on people to anon, authenticated;
grant all on vars to anon, authenticated;
grant execute on function pg_temp.ids_json(text[]) to anon, authenticated;

set local role authenticated;

-- ---------------------------------------------------------------------------
-- Host: creates the events and adds the cohost as an author
-- ---------------------------------------------------------------------------

select test_support.login('host');

insert into vars values ('event', api.create_event('Launch party'));
insert into vars values ('event2', api.create_event('Second event'));

select is(
    api.add_event_author(test_support.id('event'), test_support.u('cohost')) -> 'author_ids',
    pg_temp.ids_json('host', 'cohost'),
    'host: add_event_author makes the cohost the second author, after the creator'
);

select throws_ok(
    format('select api.like_event(%L)', test_support.id('event')),
    '42501', null,
    'host: the event''s creator cannot like their own event (42501)'
);

select throws_ok(
    format('select api.remove_event_author(%L, %L)', test_support.id('event'), test_support.u('host')),
    '22023', null,
    'host: removing the creator from the authors is refused with 22023'
);

-- ---------------------------------------------------------------------------
-- Cohost: an author, but not the event's creator
-- ---------------------------------------------------------------------------

select test_support.login('cohost');

select throws_ok(
    format('select api.like_event(%L)', test_support.id('event')),
    '42501', null,
    'cohost: an author cannot like the event (42501)'
);

select throws_ok(
    format('select api.add_event_author(%L, %L)', test_support.id('event'), test_support.u('stranger')),
    '42501', null,
    'cohost: add_event_author by an author who is not the creator raises 42501'
);

select throws_ok(
    format('select api.remove_event_author(%L, %L)', test_support.id('event'), test_support.u('cohost')),
    '42501', null,
    'cohost: remove_event_author by an author who is not the creator raises 42501'
);

-- ---------------------------------------------------------------------------
-- Leader: creates like groups, adds and removes members
-- ---------------------------------------------------------------------------

select test_support.login('leader');

-- f02 before f01 on purpose: member_ids come back creator first, then in order.
insert into vars values ('g',
    api.like_event(test_support.id('event'), test_support.us('f02', 'f01', 'leader', 'f01')));

select is(
    test_support.v('g'),
    jsonb_build_object(
        'id', test_support.id('g'), 'event_id', test_support.id('event'), 'creator_id', test_support.u('leader'),
        'status', 'pending', 'member_ids', pg_temp.ids_json('leader', 'f01', 'f02'),
        'created_at', now(), 'approvals_received', 0, 'approvals_needed', 2, 'chat_id', null),
    'leader: like_event returns the pending group, creator first, duplicates and self dropped, needed min(2 authors, 3 members) = 2'
);

select is(
    (select count(*) from app.like_groups where event_id = test_support.id('event')),
    1::bigint,
    'leader: reads the one like group of the event'
);

select throws_ok(
    format('select api.like_event(%L)', test_support.id('event')),
    'PT409', null,
    'leader: liking the event again while in a pending group of it raises PT409'
);

select throws_ok(
    format('select api.like_event(%L, %L)', test_support.id('event2'), test_support.us('f05', 'outsider')),
    '42501', null,
    'leader: a non-friend (only a pending request) in member_ids raises 42501'
);

select throws_ok(
    format('select api.like_event(%L, %L)', test_support.id('event2'),
           test_support.us('f01', 'f02', 'f03', 'f04', 'f05', 'f06', 'f07', 'f08', 'f09', 'f10')),
    'PT409', null,
    'leader: 10 member_ids (11 people) raise PT409'
);

select throws_ok(
    $$select api.like_event('00000000-0000-4000-8000-0000000000ee')$$,
    'PT404', null,
    'leader: liking an unknown event raises PT404'
);

insert into vars values ('big',
    api.like_event(test_support.id('event2'),
                   test_support.us('f01', 'f02', 'f03', 'f04', 'f05', 'f06', 'f07', 'f08', 'f09')));

select is(
    test_support.v('big') - 'id' - 'created_at',
    jsonb_build_object(
        'event_id', test_support.id('event2'), 'creator_id', test_support.u('leader'), 'status', 'pending',
        'member_ids', pg_temp.ids_json('leader', 'f01', 'f02', 'f03', 'f04', 'f05', 'f06', 'f07', 'f08', 'f09'),
        'approvals_received', 0, 'approvals_needed', 1, 'chat_id', null),
    'leader: 9 member_ids (10 people) make a group of ten; needed min(1 author, 10) = 1'
);

select throws_ok(
    format('select api.add_like_group_member(%L, %L)', test_support.id('big'), test_support.u('f10')),
    'PT409', null,
    'leader: adding an 11th member raises PT409'
);

select throws_ok(
    format('select api.add_like_group_member(%L, %L)', test_support.id('g'), test_support.u('outsider')),
    '42501', null,
    'leader: adding a non-friend raises 42501'
);

select throws_ok(
    $$select api.add_like_group_member('00000000-0000-4000-8000-0000000000ee',
                                       '00000000-0000-4000-8000-000000000013')$$,
    'PT404', null,
    'leader: adding to an unknown group raises PT404'
);

select is(
    api.add_like_group_member(test_support.id('g'), test_support.u('f03')) -> 'member_ids',
    pg_temp.ids_json('leader', 'f01', 'f02', 'f03'),
    'leader: add_like_group_member(f03) returns the group with f03 appended'
);

select is(
    api.add_like_group_member(test_support.id('g'), test_support.u('f04')) -> 'member_ids',
    pg_temp.ids_json('leader', 'f01', 'f02', 'f03', 'f04'),
    'leader: add_like_group_member(f04) returns five members'
);

select throws_ok(
    format('select api.remove_like_group_member(%L, %L)', test_support.id('g'), test_support.u('leader')),
    'PT400', null,
    'leader: the creator removing themself raises PT400'
);

select is(
    api.remove_like_group_member(test_support.id('g'), test_support.u('f03')) -> 'member_ids',
    pg_temp.ids_json('leader', 'f01', 'f02', 'f04'),
    'leader: the creator removes f03'
);

select throws_ok(
    format('select api.remove_like_group_member(%L, %L)', test_support.id('g'), test_support.u('f03')),
    'PT404', null,
    'leader: removing someone who is no longer a member raises PT404'
);

select throws_ok(
    format('select api.approve_like_group(%L)', test_support.id('g')),
    '42501', null,
    'leader: the group''s creator is not an author: approve raises 42501'
);

-- ---------------------------------------------------------------------------
-- Members f01 and f04
-- ---------------------------------------------------------------------------

select test_support.login('f01');

select throws_ok(
    format('select api.add_like_group_member(%L, %L)', test_support.id('g'), test_support.u('f05')),
    '42501', null,
    'f01: a member who is not the creator cannot add members (42501)'
);

select throws_ok(
    format('select api.remove_like_group_member(%L, %L)', test_support.id('g'), test_support.u('f04')),
    '42501', null,
    'f01: a member removing another member raises 42501'
);

select throws_ok(
    format('select api.reject_like_group(%L)', test_support.id('g')),
    '42501', null,
    'f01: a member cannot reject the group (42501)'
);

select test_support.login('f04');

select is(
    api.remove_like_group_member(test_support.id('g'), test_support.u('f04')) -> 'member_ids',
    pg_temp.ids_json('leader', 'f01', 'f02'),
    'f04: a member removes themself'
);

select throws_ok(
    format('select api.get_like_group(%L)', test_support.id('g')),
    '42501', null,
    'f04: after leaving, the group is no longer visible (42501)'
);

-- ---------------------------------------------------------------------------
-- Rival: competes for the same people in the same event
-- ---------------------------------------------------------------------------

select test_support.login('rival');

select throws_ok(
    format('select api.like_event(%L, %L)', test_support.id('event'), test_support.us('f01')),
    'PT409', null,
    'rival: liking with f01, already in a pending group of the event, raises PT409'
);

insert into vars values ('r', api.like_event(test_support.id('event')));

select is(
    test_support.v('r') -> 'member_ids',
    pg_temp.ids_json('rival'),
    'rival: liking alone creates a group of one'
);

select throws_ok(
    format('select api.add_like_group_member(%L, %L)', test_support.id('r'), test_support.u('f01')),
    'PT409', null,
    'rival: adding f01, already in a pending group of the event, raises PT409'
);

select is(
    api.add_like_group_member(test_support.id('r'), test_support.u('f10')) -> 'member_ids',
    pg_temp.ids_json('rival', 'f10'),
    'rival: adds f10, who is in no group of this event'
);

-- ---------------------------------------------------------------------------
-- Visibility: members, the event's creator and authors; not a stranger
-- ---------------------------------------------------------------------------

select test_support.login('f01');

select is(
    api.get_like_group(test_support.id('g')),
    jsonb_build_object(
        'id', test_support.id('g'), 'event_id', test_support.id('event'), 'creator_id', test_support.u('leader'),
        'status', 'pending', 'member_ids', pg_temp.ids_json('leader', 'f01', 'f02'),
        'created_at', now(), 'approvals_received', 0, 'approvals_needed', 2, 'chat_id', null),
    'f01: a member reads the group'
);

select is(api.list_like_group_approvals(test_support.id('g')), '[]'::jsonb,
    'f01: a member reads the (empty) approvals');

select is(
    (select jsonb_agg(g ->> 'id' order by g ->> 'id') from jsonb_array_elements(api.my_like_groups()) g),
    (select jsonb_agg(x order by x) from unnest(array[test_support.id('g'), test_support.id('big')]::text[]) x),
    'f01: my_like_groups lists the two groups f01 is in'
);

select test_support.login('host');

select is(api.get_like_group(test_support.id('g')) ->> 'status', 'pending',
    'host: the event''s creator reads the group');
select is(api.list_like_group_approvals(test_support.id('g')), '[]'::jsonb,
    'host: the event''s creator reads its approvals');

select test_support.login('cohost');

select is(api.get_like_group(test_support.id('g')) -> 'member_ids', pg_temp.ids_json('leader', 'f01', 'f02'),
    'cohost: an author reads the group');
select is(api.list_like_group_approvals(test_support.id('g')), '[]'::jsonb,
    'cohost: an author reads its approvals');

select test_support.login('stranger');

select throws_ok(
    format('select api.get_like_group(%L)', test_support.id('g')),
    '42501', null,
    'stranger: get_like_group raises 42501'
);
select throws_ok(
    format('select api.list_like_group_approvals(%L)', test_support.id('g')),
    '42501', null,
    'stranger: list_like_group_approvals raises 42501'
);
select throws_ok(
    $$select api.get_like_group('00000000-0000-4000-8000-0000000000ee')$$,
    'PT404', null,
    'stranger: get_like_group of an unknown id raises PT404'
);
select throws_ok(
    $$select api.list_like_group_approvals('00000000-0000-4000-8000-0000000000ee')$$,
    'PT404', null,
    'stranger: list_like_group_approvals of an unknown id raises PT404'
);
select throws_ok(
    format('select api.approve_like_group(%L)', test_support.id('g')),
    '42501', null,
    'stranger: approve_like_group raises 42501'
);
select throws_ok(
    format('select api.reject_like_group(%L)', test_support.id('g')),
    '42501', null,
    'stranger: reject_like_group raises 42501'
);
select throws_ok(
    format('select api.remove_like_group_member(%L, %L)', test_support.id('g'), test_support.u('f01')),
    'PT404', 'Like group not found.',
    'stranger: removing a member of someone else''s group raises PT404, as for no group'
);
select is(api.my_like_groups(), '[]'::jsonb,
    'stranger: my_like_groups is empty');

select is((select count(*) from app.like_groups), 0::bigint,
    'stranger: selecting app.like_groups sees 0 rows');
select is((select count(*) from app.like_group_members), 0::bigint,
    'stranger: selecting app.like_group_members sees 0 rows');

-- ---------------------------------------------------------------------------
-- Approval: cohost, then host (2 of min(2 authors, 3 members) = 2)
-- ---------------------------------------------------------------------------

select test_support.login('cohost');

select throws_ok(
    $$select api.approve_like_group('00000000-0000-4000-8000-0000000000ee')$$,
    'PT404', null,
    'cohost: approving an unknown group raises PT404'
);

select is(
    api.approve_like_group(test_support.id('g')),
    jsonb_build_object('id', test_support.id('g'), 'status', 'pending', 'chat_id', null),
    'cohost: the first approval leaves the group pending, no chat'
);

select is(
    api.get_like_group(test_support.id('g')) - 'id' - 'event_id' - 'creator_id' - 'member_ids' - 'created_at',
    '{"status": "pending", "approvals_received": 1, "approvals_needed": 2, "chat_id": null}'::jsonb,
    'cohost: get_like_group reports 1 of 2 approvals'
);

select is(
    (select jsonb_agg(a - 'id' - 'created_at') from jsonb_array_elements(api.list_like_group_approvals(test_support.id('g'))) a),
    jsonb_build_array(jsonb_build_object('group_id', test_support.id('g'), 'author_id', test_support.u('cohost'),
                                         'approved', true)),
    'cohost: list_like_group_approvals shows the one approval'
);

select is(
    (select array_agg(k order by k) from jsonb_array_elements(api.list_like_group_approvals(test_support.id('g'))) a,
         jsonb_object_keys(a) k),
    array['approved', 'author_id', 'created_at', 'group_id', 'id'],
    'cohost: an approval has exactly {id, group_id, author_id, approved, created_at}'
);

select is((select count(*) from app.chats), 0::bigint,
    'cohost: no chat exists before the threshold');

select test_support.login('host');

insert into vars values ('g_approved', api.approve_like_group(test_support.id('g')));

select is(
    test_support.v('g_approved') - 'chat_id',
    jsonb_build_object('id', test_support.id('g'), 'status', 'approved'),
    'host: the second approval reaches min(2, 3) = 2 and approves the group'
);

reset role;

select results_eq(
    format($$select id, type from app.chats where like_group_id = %L$$, test_support.id('g')),
    format($$values (%L::uuid, 'approved_group'::text)$$, test_support.v('g_approved') ->> 'chat_id'),
    'approval: exactly one chat of type approved_group, the one approve returned'
);

select bag_eq(
    format($$select user_id from app.chat_participants where chat_id = %L$$,
           test_support.v('g_approved') ->> 'chat_id'),
    $$select id from people where name in ('leader', 'f01', 'f02', 'host', 'cohost')$$,
    'approval: the chat''s participants are exactly the 3 members and the 2 authors'
);

select bag_eq(
    format($$select user_id, data from app.notifications
             where type = 'group_approved' and data ->> 'group_id' = %L$$, test_support.id('g')),
    format($$select id, jsonb_build_object('group_id', %L::uuid, 'event_id', %L::uuid, 'chat_id', %L::uuid)
             from people where name in ('leader', 'f01', 'f02')$$,
           test_support.id('g'), test_support.id('event'), test_support.v('g_approved') ->> 'chat_id'),
    'approval: one group_approved notification per member, data {group_id, event_id, chat_id}'
);

select is(
    (select count(*) from app.notifications where type = 'group_approved'),
    3::bigint,
    'approval: authors get no group_approved notification (3 rows in all)'
);

select results_eq(
    format($$select count(*) filter (where pending), count(*) from app.like_group_members
             where group_id = %L$$, test_support.id('g')),
    $$values (0::bigint, 3::bigint)$$,
    'approval: the members'' pending flag is cleared'
);

set local role authenticated;
select test_support.login('leader');

select is(
    api.get_like_group(test_support.id('g')) - 'id' - 'event_id' - 'creator_id' - 'member_ids' - 'created_at',
    jsonb_build_object('status', 'approved', 'approvals_received', 2, 'approvals_needed', 2,
                       'chat_id', test_support.v('g_approved') -> 'chat_id'),
    'leader: get_like_group shows the approved group with its chat'
);

select test_support.login('f01');

insert into vars values ('f01_again', api.like_event(test_support.id('event')));

select is(
    test_support.v('f01_again') - 'id' - 'created_at',
    jsonb_build_object('event_id', test_support.id('event'), 'creator_id', test_support.u('f01'),
                       'status', 'pending', 'member_ids', pg_temp.ids_json('f01'),
                       'approvals_received', 0, 'approvals_needed', 1, 'chat_id', null),
    'f01: once approved, a member can be in another pending group of the event'
);

select results_eq(
    $$select g.id from app.like_groups g order by g.id$$,
    format($$select x from unnest(array[%L, %L, %L]::uuid[]) x order by x$$,
           test_support.id('g'), test_support.id('big'), test_support.id('f01_again')),
    'f01: reads exactly the like groups f01 is in'
);

-- ---------------------------------------------------------------------------
-- Rejection: one author rejects the rival's group
-- ---------------------------------------------------------------------------

select test_support.login('cohost');

select is(
    api.reject_like_group(test_support.id('r')),
    jsonb_build_object('id', test_support.id('r'), 'status', 'rejected'),
    'cohost: one rejection rejects the group: {id, status: rejected}'
);

select is(api.get_like_group(test_support.id('r')) ->> 'status', 'rejected',
    'cohost: get_like_group shows rejected');

select is(
    (select jsonb_agg(a - 'id' - 'created_at') from jsonb_array_elements(api.list_like_group_approvals(test_support.id('r'))) a),
    jsonb_build_array(jsonb_build_object('group_id', test_support.id('r'), 'author_id', test_support.u('cohost'),
                                         'approved', false)),
    'cohost: the rejection is listed with approved false'
);

select throws_ok(
    format('select api.reject_like_group(%L)', test_support.id('g')),
    'PT400', null,
    'cohost: rejecting an approved group raises PT400'
);

select throws_ok(
    format('select api.reject_like_group(%L)', test_support.id('r')),
    'PT400', null,
    'cohost: rejecting a rejected group again raises PT400'
);

select test_support.login('host');

select throws_ok(
    format('select api.approve_like_group(%L)', test_support.id('r')),
    'PT400', null,
    'host: approving a rejected group raises PT400'
);

select throws_ok(
    format('select api.approve_like_group(%L)', test_support.id('g')),
    'PT400', null,
    'host: approving an already approved group raises PT400'
);

reset role;

select bag_eq(
    format($$select user_id, data from app.notifications
             where type = 'group_rejected' and data ->> 'group_id' = %L$$, test_support.id('r')),
    format($$select id, jsonb_build_object('group_id', %L::uuid, 'event_id', %L::uuid)
             from people where name in ('rival', 'f10')$$,
           test_support.id('r'), test_support.id('event')),
    'rejection: one group_rejected notification per member, data {group_id, event_id}'
);

select is(
    (select count(*) from app.chats where like_group_id = test_support.id('r')),
    0::bigint,
    'rejection: no chat is created'
);

select is(
    (select status from app.like_groups where id = test_support.id('r')),
    'rejected',
    'rejection: the stored status is rejected'
);

set local role authenticated;

select test_support.login('rival');

select throws_ok(
    format('select api.add_like_group_member(%L, %L)', test_support.id('r'), test_support.u('f01')),
    'PT400', null,
    'rival: adding to a rejected group raises PT400'
);

select test_support.login('leader');

select throws_ok(
    format('select api.add_like_group_member(%L, %L)', test_support.id('g'), test_support.u('f05')),
    'PT400', null,
    'leader: adding to an approved group raises PT400'
);

select throws_ok(
    format('select api.remove_like_group_member(%L, %L)', test_support.id('g'), test_support.u('f02')),
    'PT400', null,
    'leader: removing from an approved group raises PT400'
);

select test_support.login('f10');

select is(
    api.like_event(test_support.id('event')) ->> 'status',
    'pending',
    'f10: once the rival''s group is rejected, f10 can like the event in a new group'
);

-- ---------------------------------------------------------------------------
-- Stranger again: row-level security on the approvals table
-- ---------------------------------------------------------------------------

select test_support.login('stranger');

select is((select count(*) from app.like_groups), 0::bigint,
    'stranger: after the decisions, still 0 like_groups rows');
select is((select count(*) from app.like_group_members), 0::bigint,
    'stranger: after the decisions, still 0 like_group_members rows');
select is((select count(*) from app.like_group_approvals), 0::bigint,
    'stranger: selecting app.like_group_approvals sees 0 rows');

-- ---------------------------------------------------------------------------
-- Direct writes, as a member and as an author: none, whatever the policies
-- ---------------------------------------------------------------------------

select test_support.login('f01');

select is((select count(*) from app.like_group_approvals where group_id = test_support.id('g')), 2::bigint,
    'f01: a member reads the group''s two approvals');

select throws_ok(
    format($$insert into app.like_groups (event_id, creator_id) values (%L, %L)$$,
           test_support.id('event2'), test_support.u('f01')),
    '42501', null, 'f01: cannot insert into app.like_groups');
select throws_ok(
    format($$update app.like_groups set status = 'approved' where id = %L$$, test_support.id('f01_again')),
    '42501', null, 'f01: cannot update app.like_groups');
select throws_ok(
    format($$delete from app.like_groups where id = %L$$, test_support.id('f01_again')),
    '42501', null, 'f01: cannot delete from app.like_groups');

select throws_ok(
    format($$insert into app.like_group_members (group_id, event_id, user_id) values (%L, %L, %L)$$,
           test_support.id('g'), test_support.id('event'), test_support.u('f05')),
    '42501', null, 'f01: cannot insert into app.like_group_members');
select throws_ok(
    format($$update app.like_group_members set pending = false where group_id = %L$$, test_support.id('f01_again')),
    '42501', null, 'f01: cannot update app.like_group_members');
select throws_ok(
    format($$delete from app.like_group_members where group_id = %L$$, test_support.id('g')),
    '42501', null, 'f01: cannot delete from app.like_group_members');

select test_support.login('cohost');

select throws_ok(
    format($$insert into app.like_group_approvals (group_id, author_id, approved) values (%L, %L, true)$$,
           test_support.id('f01_again'), test_support.u('cohost')),
    '42501', null, 'cohost: an author cannot insert into app.like_group_approvals');
select throws_ok(
    format($$update app.like_group_approvals set approved = true where group_id = %L$$, test_support.id('r')),
    '42501', null, 'cohost: an author cannot update app.like_group_approvals');
select throws_ok(
    format($$delete from app.like_group_approvals where group_id = %L$$, test_support.id('g')),
    '42501', null, 'cohost: an author cannot delete from app.like_group_approvals');
select throws_ok(
    format($$update app.like_groups set status = 'pending' where id = %L$$, test_support.id('r')),
    '42501', null, 'cohost: an author cannot update app.like_groups directly');
select throws_ok(
    format($$insert into app.event_authors (event_id, user_id) values (%L, %L)$$,
           test_support.id('event'), test_support.u('stranger')),
    '42501', null, 'cohost: cannot insert into app.event_authors directly');

-- ---------------------------------------------------------------------------
-- Host: authors can be removed; a removed author loses approval rights
-- ---------------------------------------------------------------------------

select test_support.login('host');

select is(
    api.remove_event_author(test_support.id('event'), test_support.u('cohost')) -> 'author_ids',
    pg_temp.ids_json('host'),
    'host: remove_event_author(cohost) leaves the creator as the only author'
);

select throws_ok(
    format('select api.remove_event_author(%L, %L)', test_support.id('event'), test_support.u('cohost')),
    'PT404', null,
    'host: removing someone who is not an author raises PT404'
);

select test_support.login('cohost');

select throws_ok(
    format('select api.approve_like_group(%L)', test_support.id('f01_again')),
    '42501', null,
    'cohost: a removed author can no longer approve (42501)'
);

-- ---------------------------------------------------------------------------
-- Anonymous
-- ---------------------------------------------------------------------------

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select throws_ok(
    format('select api.like_event(%L)', test_support.id('event')),
    '42501', null, 'anon: like_event raises 42501');
select throws_ok(
    format('select api.get_like_group(%L)', test_support.id('g')),
    '42501', null, 'anon: get_like_group raises 42501');
select throws_ok(
    format('select api.approve_like_group(%L)', test_support.id('f01_again')),
    '42501', null, 'anon: approve_like_group raises 42501');
select throws_ok(
    format('select api.add_like_group_member(%L, %L)', test_support.id('f01_again'), test_support.u('f02')),
    '42501', null, 'anon: add_like_group_member raises 42501');
select throws_ok(
    format('select api.add_event_author(%L, %L)', test_support.id('event'), test_support.u('f02')),
    '42501', null, 'anon: add_event_author raises 42501');

reset role;

select * from finish();
rollback;
