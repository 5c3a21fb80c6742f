-- One statement for each of 0045_lists.sql, in reverse order (yoyo pairs them:
-- a failed run of that non-transactional migration is undone with the
-- statements paired with those it ran); `select 1` pairs with a statement that
-- needs no undoing.

set lock_timeout = '5s';
create index concurrently if not exists notifications_user_id_created_at_idx
    on app.notifications (user_id, created_at desc);
drop index concurrently if exists app.notifications_user_order_idx;
create index concurrently if not exists pair_invites_invitee_email_idx
    on app.pair_invites (invitee_email) where invitee_email is not null;
drop index concurrently if exists app.pair_invites_invitee_email_order_idx;
create index concurrently if not exists pair_invites_invitee_id_idx
    on app.pair_invites (invitee_id) where invitee_id is not null;
drop index concurrently if exists app.pair_invites_invitee_order_idx;
create index concurrently if not exists pair_invites_inviter_id_idx
    on app.pair_invites (inviter_id);
drop index concurrently if exists app.pair_invites_inviter_order_idx;
create index concurrently if not exists like_group_members_user_covering_idx
    on app.like_group_members (user_id) include (group_id, created_at);
drop index concurrently if exists app.like_group_members_user_order_idx;
drop index concurrently if exists app.group_members_group_order_idx;
create index concurrently if not exists group_members_user_id_idx
    on app.group_members (user_id);
drop index concurrently if exists app.group_members_user_order_idx;
select 1;
alter table app.groups drop constraint if exists groups_member_count_check;
select 1;
alter table app.groups drop column if exists member_count;
select 1;
reset lock_timeout;
