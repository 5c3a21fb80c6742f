-- One statement for each of 0049_queue_pages.sql, in reverse order (yoyo pairs
-- them: a failed run of that non-transactional migration is undone with the
-- statements paired with those it ran); `select 1` pairs with a statement that
-- needs no undoing. The decided_at written for old decided groups stays.

set lock_timeout = '5s';
create index concurrently if not exists friendships_user_high_idx
    on app.friendships (user_high);
drop index concurrently if exists app.friendships_high_order_idx;
drop index concurrently if exists app.friendships_low_order_idx;
create index concurrently if not exists chat_participants_user_id_idx
    on app.chat_participants (user_id);
drop index concurrently if exists app.chat_participants_user_order_idx;
create index concurrently if not exists group_invites_group_id_idx
    on app.group_invites (group_id);
drop index concurrently if exists app.group_invites_group_order_idx;
drop index concurrently if exists app.like_groups_event_decided_idx;
drop index concurrently if exists app.like_groups_event_pending_idx;
select 1;
alter table app.like_groups drop constraint if exists like_groups_decided_at_check;
select 1;
select 1;
reset lock_timeout;
