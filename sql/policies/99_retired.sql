-- Tables this release no longer uses, dropped here: in the rebuild's one
-- transaction, after every function that used them has been replaced, so no
-- moment has a running function name a table that is gone (a migration would
-- drop it before the rebuild, while the old functions still serve requests).
-- Each stays until the rebuild that stops using it; `if exists` keeps the
-- next rebuilds quiet.

-- The rate limiter's log of hits, a row per counted attempt (migrations 0001,
-- 0005), replaced by app.rate_limit_counters (migration 0043).
drop table if exists app.rate_limit_hits;
