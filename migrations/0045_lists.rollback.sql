create index notifications_user_id_created_at_idx on app.notifications (user_id, created_at desc);
drop index app.notifications_user_order_idx;
create index pair_invites_invitee_email_idx on app.pair_invites (invitee_email)
    where invitee_email is not null;
drop index app.pair_invites_invitee_email_order_idx;
create index pair_invites_invitee_id_idx on app.pair_invites (invitee_id) where invitee_id is not null;
drop index app.pair_invites_invitee_order_idx;
create index pair_invites_inviter_id_idx on app.pair_invites (inviter_id);
drop index app.pair_invites_inviter_order_idx;
create index like_group_members_user_covering_idx
    on app.like_group_members (user_id) include (group_id, created_at);
drop index app.like_group_members_user_order_idx;
drop index app.group_members_group_order_idx;
create index group_members_user_id_idx on app.group_members (user_id);
drop index app.group_members_user_order_idx;
alter table app.groups drop column member_count;
