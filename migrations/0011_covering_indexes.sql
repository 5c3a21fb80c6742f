-- Covering indexes for the like-group reads (my_like_groups, get_like_group and
-- every answer that shows a like group): each lookup is answered from the index
-- alone (an index-only scan), without a visit to a table page that, at a million
-- rows, is seldom in shared buffers. Two replace the indexes they extend (same
-- leading columns, so foreign keys and the policies are served as before).
-- depends: 0005_rate_limit_prune

-- A user's like groups: group and date without reading the rows.
create index like_group_members_user_covering_idx
    on app.like_group_members (user_id) include (group_id, created_at);
drop index app.like_group_members_user_id_idx;

-- A group's members in order (member_ids), and the foreign key to like_groups.
create index like_group_members_group_covering_idx
    on app.like_group_members (group_id, event_id) include (user_id, created_at);
drop index app.like_group_members_group_event_idx;

-- The approvals that count (approved ones) of a group, by author.
create index like_group_approvals_approved_idx
    on app.like_group_approvals (group_id, author_id) where approved;

-- A like group's chat id.
create index chats_like_group_covering_idx on app.chats (like_group_id) include (id);
