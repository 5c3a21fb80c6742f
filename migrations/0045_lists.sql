-- Set-based, paginated lists (issue 19, item 11).
--
-- 1. app.groups.member_count: the number of rows in app.group_members for the
--    group, kept by the functions that add and remove members (create_group,
--    join_group, leave_group; sql/functions/20_groups.sql), each with an
--    `update ... set member_count = member_count + 1` on the group's row, which
--    the row lock makes safe under concurrency and which names the group's id,
--    the distribution column on a Citus cluster, like the membership write
--    beside it (one shard). my_groups and preview_group_invite read it instead
--    of counting; `python -m gateway verify` checks it against count(*).
--
--    Adding the column with a constant default is a catalogue change (no table
--    rewrite). The backfill below is one UPDATE in a transaction of its own
--    (this migration is not transactional: every statement commits alone); it
--    holds the row lock of every group it counts until it commits. On a large table, run the same UPDATE in
--    batches of a few thousand ids (`where g.id in (select id from app.groups
--    where id > $last order by id limit 5000)`), one short transaction each,
--    before this migration, so that the final pass here touches nothing.
--    The rows a join or leave changes between this commit and the rebuild of
--    sql/ right after it (the old functions do not count) are set right by
--    `migrate` itself, which recounts once after the rebuild that follows this
--    migration (gateway/tools/migrate.py); after a plain `yoyo apply`, `verify`
--    finds them and `select private.recount_group_members()` sets them right.
--
-- 2. Indexes that serve each list's order, with a unique tiebreaker, so that a
--    page is a bounded index range scan (no sort of the caller's whole list).
--    Each replaces the index it extends (same leading column: the foreign keys
--    and policies are served as before).
-- 3. Online: every index is built and dropped CONCURRENTLY (writes go on), the
--    CHECK is added NOT VALID and validated in a later statement, so this file
--    is not transactional; lock_timeout bounds each statement's wait for a lock
--    (it fails rather than queue the traffic behind it; run it again). A build
--    that failed leaves an invalid index, dropped first on the next run. Its
--    rollback has one statement per statement here, in reverse (yoyo pairs them).
-- transactional: false
-- depends: 0043_rate_limit_counters

set lock_timeout = '5s';

do $$
declare
    v_index regclass;
begin
    for v_index in
        select i.indexrelid::regclass from pg_catalog.pg_index i
        join pg_catalog.pg_class c on c.oid = i.indexrelid
        where not i.indisvalid and c.relnamespace = 'app'::regnamespace
          and c.relname in ('group_members_user_order_idx', 'group_members_group_order_idx',
                            'like_group_members_user_order_idx', 'pair_invites_inviter_order_idx',
                            'pair_invites_invitee_order_idx', 'pair_invites_invitee_email_order_idx',
                            'notifications_user_order_idx')
    loop
        execute pg_catalog.format('drop index %s', v_index);
    end loop;
end $$;

alter table app.groups add column if not exists member_count integer not null default 0;

update app.groups g set member_count = c.n
from (select m.group_id, count(*)::integer n from app.group_members m group by m.group_id) c
where g.id = c.group_id and g.member_count is distinct from c.n;

do $$ begin
    if not exists (select from pg_catalog.pg_constraint
                   where conrelid = 'app.groups'::regclass
                     and conname = 'groups_member_count_check') then
        alter table app.groups add constraint groups_member_count_check
            check (member_count >= 0) not valid;
    end if;
end $$;
alter table app.groups validate constraint groups_member_count_check;

create index concurrently if not exists group_members_user_order_idx
    on app.group_members (user_id, created_at, group_id);
drop index concurrently if exists app.group_members_user_id_idx;

create index concurrently if not exists group_members_group_order_idx
    on app.group_members (group_id, created_at, user_id);

create index concurrently if not exists like_group_members_user_order_idx
    on app.like_group_members (user_id, created_at, group_id) include (event_id);
drop index concurrently if exists app.like_group_members_user_covering_idx;

create index concurrently if not exists pair_invites_inviter_order_idx
    on app.pair_invites (inviter_id, created_at, id);
drop index concurrently if exists app.pair_invites_inviter_id_idx;

create index concurrently if not exists pair_invites_invitee_order_idx
    on app.pair_invites (invitee_id, created_at, id) where invitee_id is not null;
drop index concurrently if exists app.pair_invites_invitee_id_idx;

create index concurrently if not exists pair_invites_invitee_email_order_idx
    on app.pair_invites (invitee_email, created_at, id) where invitee_email is not null;
drop index concurrently if exists app.pair_invites_invitee_email_idx;

create index concurrently if not exists notifications_user_order_idx
    on app.notifications (user_id, created_at, id);
drop index concurrently if exists app.notifications_user_id_created_at_idx;

reset lock_timeout;
