drop index app.chats_like_group_covering_idx;
drop index app.like_group_approvals_approved_idx;
create index like_group_members_group_event_idx on app.like_group_members (group_id, event_id);
drop index app.like_group_members_group_covering_idx;
create index like_group_members_user_id_idx on app.like_group_members (user_id);
drop index app.like_group_members_user_covering_idx;
