-- Pages of the remaining lists (issue 19, item 11): the authors' approval queue
-- (api.event_like_groups), a group's invites (list_group_invites), the caller's
-- chats (my_chats) and friends (list_friends). Each order is served by one
-- index with a unique tiebreaker, so that a page is a bounded index range:
--
-- - the queue's pending groups, oldest first: (event_id, created_at, id) of the
--   pending groups; its decided groups, last decided first: (event_id,
--   decided_at, id) of the others. like_groups_event_id_idx stays (the foreign
--   key, evaluate_event_groups and the event's other reads use it);
-- - a group's invites, newest first: (group_id, created_at, id), which
--   replaces group_invites_group_id_idx (same leading column: the foreign key
--   and the policy are served as before);
-- - the caller's chats, newest participation first: (user_id, created_at,
--   chat_id) include (event_id), which replaces chat_participants_user_id_idx;
-- - the caller's friendships, newest first, from either side of the pair:
--   (user_low, created_at, user_high) and (user_high, created_at, user_low),
--   the second replacing friendships_user_high_idx.
--
-- A decided group always has its decided_at (approve and reject write both in
-- one UPDATE), and the queue's keyset needs it: a group decided before
-- decided_at was written everywhere (an old schema's rows) gets its
-- created_at, then a CHECK says so from now on, added NOT VALID and validated
-- in a statement of its own (SHARE UPDATE EXCLUSIVE: writes go on).
--
-- Online, as 0045: not transactional, indexes built and dropped CONCURRENTLY,
-- lock_timeout bounding each statement's wait (it fails rather than queue the
-- traffic behind it; run it again), an invalid index of a failed run dropped
-- first. The rollback pairs one statement with each statement here, in reverse.
-- transactional: false
-- depends: 0048_private_no_anon

set lock_timeout = '5s';

do $$
declare
    v_index regclass;
begin
    for v_index in
        select i.indexrelid::regclass from pg_catalog.pg_index i
        join pg_catalog.pg_class c on c.oid = i.indexrelid
        where not i.indisvalid and c.relnamespace = 'app'::regnamespace
          and c.relname in ('like_groups_event_pending_idx', 'like_groups_event_decided_idx',
                            'group_invites_group_order_idx', 'chat_participants_user_order_idx',
                            'friendships_low_order_idx', 'friendships_high_order_idx')
    loop
        execute pg_catalog.format('drop index %s', v_index);
    end loop;
end $$;

update app.like_groups set decided_at = created_at
where status <> 'pending' and decided_at is null;

do $$ begin
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = 'app.like_groups'::regclass
                     and conname = 'like_groups_decided_at_check') then
        alter table app.like_groups add constraint like_groups_decided_at_check
            check ((status = 'pending') = (decided_at is null)) not valid;
    end if;
end $$;
alter table app.like_groups validate constraint like_groups_decided_at_check;

create index concurrently if not exists like_groups_event_pending_idx
    on app.like_groups (event_id, created_at, id) where status = 'pending';

create index concurrently if not exists like_groups_event_decided_idx
    on app.like_groups (event_id, decided_at, id) where status <> 'pending';

create index concurrently if not exists group_invites_group_order_idx
    on app.group_invites (group_id, created_at, id);
drop index concurrently if exists app.group_invites_group_id_idx;

create index concurrently if not exists chat_participants_user_order_idx
    on app.chat_participants (user_id, created_at, chat_id) include (event_id);
drop index concurrently if exists app.chat_participants_user_id_idx;

create index concurrently if not exists friendships_low_order_idx
    on app.friendships (user_low, created_at, user_high);

create index concurrently if not exists friendships_high_order_idx
    on app.friendships (user_high, created_at, user_low);
drop index concurrently if exists app.friendships_user_high_idx;

reset lock_timeout;
