-- One statement for each of 0047_lean_indexes.sql, in reverse order (yoyo pairs
-- them); the indexes come back as 0011 made them, built CONCURRENTLY.

set lock_timeout = '5s';
alter table app.group_invites reset (fillfactor);
alter table app.events reset (fillfactor);
create index concurrently if not exists like_group_approvals_approved_idx
    on app.like_group_approvals (group_id, author_id) where approved;
create index concurrently if not exists chats_like_group_covering_idx
    on app.chats (like_group_id) include (id);
reset lock_timeout;
