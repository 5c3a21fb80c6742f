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
--    rewrite). The backfill below is one UPDATE: fine for the tables this
--    project ships with, but it holds the row lock of every group it counts
--    until the migration commits. On a large table, run the same UPDATE in
--    batches of a few thousand ids (`where g.id in (select id from app.groups
--    where id > $last order by id limit 5000)`), one short transaction each,
--    before this migration, so that the final pass here touches nothing.
--    The rows a join or leave changes between this commit and the rebuild of
--    sql/ right after it (the old functions do not count) are found by
--    `verify` and set right by `select private.recount_group_members()`.
--
-- 2. Indexes that serve each list's order, with a unique tiebreaker, so that a
--    page is a bounded index range scan (no sort of the caller's whole list).
--    Each replaces the index it extends (same leading column: the foreign keys
--    and policies are served as before).
-- depends: 0042_mail_lease

alter table app.groups add column member_count integer not null default 0;

update app.groups g set member_count = c.n
from (select m.group_id, count(*)::integer n from app.group_members m group by m.group_id) c
where g.id = c.group_id and g.member_count is distinct from c.n;

alter table app.groups add constraint groups_member_count_check
    check (member_count >= 0) not valid;
alter table app.groups validate constraint groups_member_count_check;

-- my_groups: a user's memberships, newest first.
create index group_members_user_order_idx
    on app.group_members (user_id, created_at, group_id);
drop index app.group_members_user_id_idx;

-- group_members: a group's members, oldest first (and leave_group's hand-over
-- to the longest-standing member).
create index group_members_group_order_idx
    on app.group_members (group_id, created_at, user_id);

-- my_like_groups: a user's like groups, newest first (the event for the join
-- to the group's own rows on its shard).
create index like_group_members_user_order_idx
    on app.like_group_members (user_id, created_at, group_id) include (event_id);
drop index app.like_group_members_user_covering_idx;

-- my_pair_invites: sent, and received by account or by address.
create index pair_invites_inviter_order_idx
    on app.pair_invites (inviter_id, created_at, id);
drop index app.pair_invites_inviter_id_idx;
create index pair_invites_invitee_order_idx
    on app.pair_invites (invitee_id, created_at, id) where invitee_id is not null;
drop index app.pair_invites_invitee_id_idx;
create index pair_invites_invitee_email_order_idx
    on app.pair_invites (invitee_email, created_at, id) where invitee_email is not null;
drop index app.pair_invites_invitee_email_idx;

-- my_notifications: newest first, the id as tiebreaker.
create index notifications_user_order_idx
    on app.notifications (user_id, created_at, id);
drop index app.notifications_user_id_created_at_idx;
