-- Every row of an event's like groups carries the event's id: approvals, chats
-- and chat participants, and pair-invite tokens. On plain PostgreSQL this only
-- lets those rows be read with their event; on a Citus cluster the event id is
-- the distribution column of everything about an event, and these rows must
-- have it to live on their event's shard (gateway/tools/citus.py).
-- depends: 0005_rate_limit_prune

alter table app.like_group_approvals add column event_id uuid;
update app.like_group_approvals v set event_id = g.event_id
from app.like_groups g where g.id = v.group_id;
alter table app.like_group_approvals alter column event_id set not null;
create index like_group_approvals_event_group_idx on app.like_group_approvals (event_id, group_id);

alter table app.chats add column event_id uuid;
update app.chats c set event_id = g.event_id
from app.like_groups g where g.id = c.like_group_id;
alter table app.chats alter column event_id set not null;
create index chats_event_id_idx on app.chats (event_id);

alter table app.chat_participants add column event_id uuid;
update app.chat_participants p set event_id = c.event_id
from app.chats c where c.id = p.chat_id;
alter table app.chat_participants alter column event_id set not null;
create index chat_participants_event_chat_idx on app.chat_participants (event_id, chat_id);

alter table app.pair_invite_tokens add column event_id uuid;
update app.pair_invite_tokens t set event_id = i.event_id
from app.pair_invites i where i.id = t.invite_id;
alter table app.pair_invite_tokens alter column event_id set not null;
create index pair_invite_tokens_event_id_idx on app.pair_invite_tokens (event_id);
