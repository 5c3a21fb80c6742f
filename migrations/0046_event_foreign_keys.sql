-- The rows that copy their parent's event_id (migration 0010) get composite
-- foreign keys through it, as like_group_members has had since 0003: an
-- approval, a chat, a chat participant or a pair-invite token can no longer
-- name another event than its parent's. The names are those gateway/tools/citus.py
-- gives the same keys on a cluster, so a cluster made before this migration
-- (where they exist already) skips them, and a new one keeps these.
--
-- Online on a large table, hence `transactional: false` (yoyo then runs every
-- statement in autocommit, each its own transaction):
-- - a parent's unique (id, event_id) is built CONCURRENTLY (SHARE UPDATE
--   EXCLUSIVE: reads and writes go on; it cannot run in a transaction block);
-- - each key is added NOT VALID: ADD FOREIGN KEY takes SHARE ROW EXCLUSIVE on
--   both tables (it blocks writes, not reads) for a moment, as it checks no
--   existing row;
-- - VALIDATE CONSTRAINT, a later statement and so a later transaction, reads
--   every row under SHARE UPDATE EXCLUSIVE on the table (writes go on) and ROW
--   SHARE on the parent. In one transaction the first lock would be held
--   through the whole scan: that is why this migration is not one.
-- - the single-column keys they replace are dropped last (ACCESS EXCLUSIVE on
--   both tables, a catalogue change only: no scan).
-- lock_timeout bounds each wait, so no statement queues traffic behind a long
-- transaction for more than 5 s; a migrate that gives up is run again: every
-- statement is idempotent (IF NOT EXISTS, or a DO block that checks first).
-- yoyo undoes the statements already run of a failed non-transactional
-- migration with the rollback file's statements, paired one for one in
-- reverse order: 0046_event_foreign_keys.rollback.sql keeps that pairing.
-- A CREATE INDEX CONCURRENTLY that fails leaves an INVALID index behind; the
-- next run drops it first (the DO block before each build).
-- transactional: false
-- depends: 0045_lists

set lock_timeout = '5s';

-- Parents: a unique (id, event_id) for the keys to reference.
do $$ begin
    if exists (select from pg_catalog.pg_index i where not i.indisvalid
               and i.indexrelid = pg_catalog.to_regclass('app.chats_id_event_key')) then
        drop index app.chats_id_event_key;
    end if;
end $$;
create unique index concurrently if not exists chats_id_event_key on app.chats (id, event_id);
do $$ begin
    if exists (select from pg_catalog.pg_index i where not i.indisvalid
               and i.indexrelid = pg_catalog.to_regclass('app.pair_invites_id_event_key')) then
        drop index app.pair_invites_id_event_key;
    end if;
end $$;
create unique index concurrently if not exists pair_invites_id_event_key
    on app.pair_invites (id, event_id);
-- The tokens' key needs an index leading with (invite_id, event_id): it
-- replaces the one on invite_id alone.
do $$ begin
    if exists (select from pg_catalog.pg_index i where not i.indisvalid
               and i.indexrelid = pg_catalog.to_regclass('app.pair_invite_tokens_invite_event_idx')) then
        drop index app.pair_invite_tokens_invite_event_idx;
    end if;
end $$;
create index concurrently if not exists pair_invite_tokens_invite_event_idx
    on app.pair_invite_tokens (invite_id, event_id);

-- The keys, NOT VALID.
do $$ begin
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = 'app.like_group_approvals'::regclass
                     and conname = 'like_group_approvals_group_fkey') then
        alter table app.like_group_approvals add constraint like_group_approvals_group_fkey
            foreign key (group_id, event_id) references app.like_groups (id, event_id)
            on delete cascade not valid;
    end if;
end $$;
do $$ begin
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = 'app.chats'::regclass and conname = 'chats_like_group_fkey') then
        alter table app.chats add constraint chats_like_group_fkey
            foreign key (like_group_id, event_id) references app.like_groups (id, event_id)
            on delete cascade not valid;
    end if;
end $$;
do $$ begin
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = 'app.chat_participants'::regclass
                     and conname = 'chat_participants_chat_fkey') then
        alter table app.chat_participants add constraint chat_participants_chat_fkey
            foreign key (chat_id, event_id) references app.chats (id, event_id)
            on delete cascade not valid;
    end if;
end $$;
do $$ begin
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = 'app.pair_invite_tokens'::regclass
                     and conname = 'pair_invite_tokens_invite_fkey') then
        alter table app.pair_invite_tokens add constraint pair_invite_tokens_invite_fkey
            foreign key (invite_id, event_id) references app.pair_invites (id, event_id)
            on delete cascade not valid;
    end if;
end $$;

-- Then VALIDATE, each in its own transaction (a no-op once valid).
alter table app.like_group_approvals validate constraint like_group_approvals_group_fkey;
alter table app.chats validate constraint chats_like_group_fkey;
alter table app.chat_participants validate constraint chat_participants_chat_fkey;
alter table app.pair_invite_tokens validate constraint pair_invite_tokens_invite_fkey;

-- What the composite keys make redundant.
alter table app.like_group_approvals drop constraint if exists like_group_approvals_group_id_fkey;
alter table app.chats drop constraint if exists chats_like_group_id_fkey;
alter table app.chat_participants drop constraint if exists chat_participants_chat_id_fkey;
alter table app.pair_invite_tokens drop constraint if exists pair_invite_tokens_invite_id_fkey;
drop index concurrently if exists app.pair_invite_tokens_invite_id_idx;

reset lock_timeout;
