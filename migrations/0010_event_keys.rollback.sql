alter table app.pair_invite_tokens drop column if exists event_id;
alter table app.chat_participants drop column if exists event_id;
alter table app.chats drop column if exists event_id;
alter table app.like_group_approvals drop column if exists event_id;
