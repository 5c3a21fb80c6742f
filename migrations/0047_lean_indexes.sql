-- Indexes that no query needs, and room for the hot counters.
--
-- Dropped (every write paid for them):
-- - chats_like_group_covering_idx, (like_group_id) include (id): the unique
--   chats_like_group_id_key on like_group_id already finds a group's chat (one
--   row, one heap visit) and serves the (like_group_id, event_id) foreign key
--   of 0046;
-- - like_group_approvals_approved_idx, (group_id, author_id) where approved:
--   EXPLAIN on 50,000 approvals shows the tally and like_group_json counting
--   through like_group_approvals_event_group_idx (event_id, group_id), which
--   also serves the (group_id, event_id) foreign key, and approved_by_me found
--   through it as well once the partial index is gone (a group has a few
--   authors' rows). The unique like_group_approvals_one_per_author stays: the
--   upserts name it.
-- Kept: pair_invites_invitee_email_idx. The issue called it unused, but since
-- 0015 it is on the column my_pair_invites compares (its UNION ALL branch by
-- address); tests/test_plans.py fails with a Seq Scan without it.
--
-- fillfactor 80 on app.events (seats_taken) and app.group_invites (use_count):
-- each join or registration rewrites the row, and 20 % free room on a page lets
-- that new version stay on the page (a HOT update: no index entry, no page
-- split). ALTER TABLE ... SET only records the setting (SHARE UPDATE EXCLUSIVE,
-- no rewrite): it applies to pages filled from now on. Existing full pages keep
-- no room until the table is rewritten (VACUUM FULL, CLUSTER or pg_repack, at
-- a quiet time), which this migration does not do.
--
-- Not in a transaction (transactional: false), as 0046: DROP INDEX
-- CONCURRENTLY waits for the queries using the index instead of taking ACCESS
-- EXCLUSIVE on the table. The rollback pairs one statement with each.
-- transactional: false
-- depends: 0046_event_foreign_keys

set lock_timeout = '5s';
drop index concurrently if exists app.chats_like_group_covering_idx;
drop index concurrently if exists app.like_group_approvals_approved_idx;
alter table app.events set (fillfactor = 80);
alter table app.group_invites set (fillfactor = 80);
reset lock_timeout;
