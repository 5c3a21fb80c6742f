-- One statement for each of 0046_event_foreign_keys.sql, in reverse order: yoyo
-- pairs them so (a failed run of that non-transactional migration is undone with
-- the statements paired with those it ran). `select 1` pairs with a statement
-- that needs no undoing. The single-column keys come back NOT VALID, then
-- validated.

set lock_timeout = '5s';
create index concurrently if not exists pair_invite_tokens_invite_id_idx
    on app.pair_invite_tokens (invite_id);
do $$ begin
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = 'app.pair_invite_tokens'::regclass
                     and conname = 'pair_invite_tokens_invite_id_fkey') then
        alter table app.pair_invite_tokens add constraint pair_invite_tokens_invite_id_fkey
            foreign key (invite_id) references app.pair_invites (id) on delete cascade not valid;
    end if;
end $$;
do $$ begin
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = 'app.chat_participants'::regclass
                     and conname = 'chat_participants_chat_id_fkey') then
        alter table app.chat_participants add constraint chat_participants_chat_id_fkey
            foreign key (chat_id) references app.chats (id) on delete cascade not valid;
    end if;
end $$;
do $$ begin
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = 'app.chats'::regclass and conname = 'chats_like_group_id_fkey') then
        alter table app.chats add constraint chats_like_group_id_fkey
            foreign key (like_group_id) references app.like_groups (id) on delete cascade not valid;
    end if;
end $$;
do $$ begin
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = 'app.like_group_approvals'::regclass
                     and conname = 'like_group_approvals_group_id_fkey') then
        alter table app.like_group_approvals add constraint like_group_approvals_group_id_fkey
            foreign key (group_id) references app.like_groups (id) on delete cascade not valid;
    end if;
end $$;
alter table app.pair_invite_tokens validate constraint pair_invite_tokens_invite_id_fkey;
alter table app.chat_participants validate constraint chat_participants_chat_id_fkey;
alter table app.chats validate constraint chats_like_group_id_fkey;
alter table app.like_group_approvals validate constraint like_group_approvals_group_id_fkey;
alter table app.pair_invite_tokens drop constraint if exists pair_invite_tokens_invite_fkey;
alter table app.chat_participants drop constraint if exists chat_participants_chat_fkey;
alter table app.chats drop constraint if exists chats_like_group_fkey;
alter table app.like_group_approvals drop constraint if exists like_group_approvals_group_fkey;
drop index concurrently if exists app.pair_invite_tokens_invite_event_idx;
select 1;
drop index concurrently if exists app.pair_invites_id_event_key;
select 1;
drop index concurrently if exists app.chats_id_event_key;
select 1;
reset lock_timeout;
