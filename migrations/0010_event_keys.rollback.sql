-- The policies that read event_id go with the columns; clearing the code mark
-- makes the next migrate rebuild sql/ whole.
alter table app.pair_invite_tokens drop column if exists event_id cascade;
alter table app.chat_participants drop column if exists event_id cascade;
alter table app.chats drop column if exists event_id cascade;
alter table app.like_group_approvals drop column if exists event_id cascade;
comment on schema api is null;
