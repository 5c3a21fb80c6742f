-- Chats, notifications and realtime topics (contract section 3: my_chats,
-- my_notifications, mark_notifications_read, can_subscribe), actor by actor:
-- the group's creator (leader) and member, the event's creator (host) and
-- second author (cohost), a stranger, and anonymous. The chat and the
-- group_approved notifications come from approving a like group through the
-- api; a few older notifications are arranged directly.
begin;
select plan(47);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

create temp table people (name text primary key, id uuid not null unique);
insert into people values
    ('host',     '00000000-0000-4000-8000-000000000001'),
    ('cohost',   '00000000-0000-4000-8000-000000000002'),
    ('leader',   '00000000-0000-4000-8000-000000000003'),
    ('member',   '00000000-0000-4000-8000-000000000004'),
    ('stranger', '00000000-0000-4000-8000-000000000005');
insert into auth.users (id, email) select id, name || '@example.com' from people;

insert into app.friendships (user_low, user_high, requester_id, status) values
    ('00000000-0000-4000-8000-000000000003', '00000000-0000-4000-8000-000000000004',
     '00000000-0000-4000-8000-000000000003', 'accepted');

-- Older notifications: the leader's (one read, two unread) and the stranger's.
insert into app.notifications (id, user_id, type, data, read_at, created_at) values
    ('00000000-0000-4000-8000-00000000e001', '00000000-0000-4000-8000-000000000003',
     'welcome', '{"n": 1}', now() - interval '1 day', now() - interval '2 days'),
    ('00000000-0000-4000-8000-00000000e002', '00000000-0000-4000-8000-000000000003',
     'reminder', '{"n": 2}', null, now() - interval '1 day'),
    ('00000000-0000-4000-8000-00000000e003', '00000000-0000-4000-8000-000000000003',
     'digest', '{"n": 3}', null, now() - interval '12 hours'),
    ('00000000-0000-4000-8000-00000000e004', '00000000-0000-4000-8000-000000000005',
     'reminder', '{"n": 4}', null, now() - interval '1 hour');

create temp table vars (name text primary key, value jsonb);

-- The caller's notifications as [type, ...], newest first.
create function pg_temp.note_types(unread_only boolean) returns jsonb
language sql as $$
    select coalesce(jsonb_agg(n -> 'type' order by o), '[]')
    from jsonb_array_elements(api.my_notifications(unread_only)) with ordinality x(n, o)
$$;

-- read_at of one of the caller's notifications, as my_notifications reports it.
create function pg_temp.read_at(uuid) returns jsonb
language sql as $$
    select n -> 'read_at' from jsonb_array_elements(api.my_notifications()) n
    where (n ->> 'id')::uuid = $1
$$;

grant select on people to anon, authenticated;
grant all on vars to anon, authenticated;
grant execute on function pg_temp.note_types(boolean), pg_temp.read_at(uuid) to anon, authenticated;

-- The like group, approved by both authors: the chat and two notifications.
set local role authenticated;

select test_support.login('host');
insert into vars values ('event', api.create_event('Launch party'));
select '# added ' || (api.add_event_author(test_support.id('event'), test_support.u('cohost')) ->> 'title');

select test_support.login('leader');
insert into vars values ('g', api.like_event(test_support.id('event'), array[test_support.u('member')]));

select test_support.login('cohost');
select '# ' || (api.approve_like_group(test_support.id('g')) ->> 'status');
select test_support.login('host');
insert into vars values ('approved', api.approve_like_group(test_support.id('g')));

reset role;

insert into vars
select 'member_note', jsonb_build_object('id', n.id) from app.notifications n
where n.user_id = test_support.u('member') and n.type = 'group_approved';

select is(
    test_support.v('approved') ->> 'status', 'approved',
    'arrange: the group is approved, which created the chat'
);

-- ---------------------------------------------------------------------------
-- Leader: a participant of the chat, with four notifications
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.login('leader');

select is(
    api.my_chats(),
    jsonb_build_array(jsonb_build_object(
        'id', test_support.v('approved') -> 'chat_id', 'type', 'approved_group',
        'like_group_id', test_support.id('g'),
        'participant_ids', (select jsonb_agg(id order by id) from people
                            where name in ('host', 'cohost', 'leader', 'member')),
        'created_at', now())),
    'leader: my_chats lists the one chat with its 4 participant_ids'
);

select is((select count(*) from app.chat_participants), 4::bigint,
    'leader: reads the 4 participant rows of the chat');

select is(
    pg_temp.note_types(false),
    '["group_approved", "digest", "reminder", "welcome"]'::jsonb,
    'leader: my_notifications lists all four, newest first'
);

select is(
    api.my_notifications() -> 0,
    jsonb_build_object(
        'id', (select id from app.notifications where type = 'group_approved'),
        'type', 'group_approved',
        'data', jsonb_build_object('group_id', test_support.id('g'), 'event_id', test_support.id('event'),
                                   'chat_id', test_support.v('approved') -> 'chat_id'),
        'read_at', null, 'created_at', now()),
    'leader: the group_approved notification is {id, type, data {group_id, event_id, chat_id}, read_at, created_at}'
);

select is(
    pg_temp.note_types(true),
    '["group_approved", "digest", "reminder"]'::jsonb,
    'leader: my_notifications(unread_only => true) leaves out the read one'
);

select is(
    api.my_notifications(unread_only => false),
    api.my_notifications(),
    'leader: unread_only => false is the default'
);

select is(
    api.mark_notifications_read(array['00000000-0000-4000-8000-00000000e002',
                                      '00000000-0000-4000-8000-00000000e004']::uuid[]),
    '{"updated": 1}'::jsonb,
    'leader: marking her reminder and the stranger''s notification updates only hers: {updated: 1}'
);

select is(
    pg_temp.read_at('00000000-0000-4000-8000-00000000e002'),
    to_jsonb(now()),
    'leader: the reminder is now read'
);

select is(
    pg_temp.note_types(true),
    '["group_approved", "digest"]'::jsonb,
    'leader: two unread notifications are left'
);

select is(
    pg_temp.read_at('00000000-0000-4000-8000-00000000e001'),
    to_jsonb(now() - interval '1 day'),
    'leader: the notification read a day ago keeps its read_at'
);

select is(
    api.mark_notifications_read(array[]::uuid[]),
    '{"updated": 0}'::jsonb,
    'leader: an empty list of ids marks nothing'
);

select is(
    api.mark_notifications_read(),
    '{"updated": 2}'::jsonb,
    'leader: mark_notifications_read() marks all the remaining unread: {updated: 2}'
);

select is(pg_temp.note_types(true), '[]'::jsonb,
    'leader: no unread notification is left');

select is(
    pg_temp.read_at('00000000-0000-4000-8000-00000000e001'),
    to_jsonb(now() - interval '1 day'),
    'leader: marking all does not touch an earlier read_at'
);

select is(
    api.mark_notifications_read(),
    '{"updated": 0}'::jsonb,
    'leader: marking all again updates nothing'
);

select is((select count(*) from app.notifications), 4::bigint,
    'leader: reads exactly her own 4 notification rows');

select is(api.can_subscribe('user:' || test_support.u('leader')), true,
    'leader: can subscribe to user:<self>');
select is(api.can_subscribe('user:' || test_support.u('member')), false,
    'leader: cannot subscribe to user:<other>');
select is(api.can_subscribe('group:' || test_support.id('g')), true,
    'leader: can subscribe to group:<her group>');

select is(api.can_subscribe('group:not-a-uuid'), false,
    'leader: group:not-a-uuid is false');
select is(api.can_subscribe('group:'), false,
    'leader: group: without an id is false');
select is(api.can_subscribe('user'), false,
    'leader: user without an id is false');
select is(api.can_subscribe(''), false,
    'leader: the empty topic is false');
select is(api.can_subscribe(null), false,
    'leader: a null topic is false, not null');
select is(api.can_subscribe(test_support.u('leader')::text), false,
    'leader: a bare uuid is false');
select is(api.can_subscribe('chat:' || (test_support.v('approved') ->> 'chat_id')), false,
    'leader: an unknown kind (chat:<id>) is false');
select is(api.can_subscribe('user:' || test_support.u('leader') || ':extra'), false,
    'leader: user:<self>:extra is false');
select is(api.can_subscribe('group:00000000-0000-4000-8000-0000000000ee'), false,
    'leader: group:<unknown id> is false');

-- ---------------------------------------------------------------------------
-- Member, host (event creator), cohost (author)
-- ---------------------------------------------------------------------------

select test_support.login('member');

select is(
    (select jsonb_agg(c -> 'id') from jsonb_array_elements(api.my_chats()) c),
    jsonb_build_array(test_support.v('approved') -> 'chat_id'),
    'member: my_chats lists the chat'
);
select is(api.can_subscribe('group:' || test_support.id('g')), true,
    'member: can subscribe to group:<id>');

select test_support.login('host');

select is(
    (select jsonb_agg(c -> 'id') from jsonb_array_elements(api.my_chats()) c),
    jsonb_build_array(test_support.v('approved') -> 'chat_id'),
    'host: the event''s creator, a participant, has the chat'
);
select is(api.can_subscribe('group:' || test_support.id('g')), true,
    'host: the event''s creator can subscribe to group:<id>');
select is(api.my_notifications(), '[]'::jsonb,
    'host: authors get no notification of the approval');

select test_support.login('cohost');

select is(api.can_subscribe('group:' || test_support.id('g')), true,
    'cohost: an author can subscribe to group:<id>');

-- ---------------------------------------------------------------------------
-- Stranger: no chat, only their own notification
-- ---------------------------------------------------------------------------

select test_support.login('stranger');

select is(api.my_chats(), '[]'::jsonb,
    'stranger: my_chats is empty');
select is((select count(*) from app.chats), 0::bigint,
    'stranger: reads no chat row');
select is((select count(*) from app.chat_participants), 0::bigint,
    'stranger: reads no chat participant row');

select is(
    (select jsonb_agg(n -> 'id') from jsonb_array_elements(api.my_notifications(true)) n),
    '["00000000-0000-4000-8000-00000000e004"]'::jsonb,
    'stranger: their notification is still unread after the leader listed its id'
);

select is(
    api.mark_notifications_read(array[test_support.id('member_note')]),
    '{"updated": 0}'::jsonb,
    'stranger: marking the member''s notification updates nothing'
);

select is(api.can_subscribe('group:' || test_support.id('g')), false,
    'stranger: cannot subscribe to group:<id>');
select is(api.can_subscribe('user:' || test_support.u('stranger')), true,
    'stranger: can subscribe to user:<self>');

select test_support.login('member');

select is(
    (select jsonb_agg(n -> 'id') from jsonb_array_elements(api.my_notifications(true)) n),
    jsonb_build_array(test_support.id('member_note')),
    'member: the group_approved notification is still unread after the stranger''s attempt'
);

-- ---------------------------------------------------------------------------
-- Anonymous
-- ---------------------------------------------------------------------------

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select throws_ok(
    format('select api.can_subscribe(%L)', 'user:' || test_support.u('leader')),
    '42501', null, 'anon: can_subscribe raises 42501');
select throws_ok($$select api.my_chats()$$, '42501', null,
    'anon: my_chats raises 42501');
select throws_ok($$select api.my_notifications()$$, '42501', null,
    'anon: my_notifications raises 42501');
select throws_ok($$select api.mark_notifications_read()$$, '42501', null,
    'anon: mark_notifications_read raises 42501');

reset role;

select * from finish();
rollback;
