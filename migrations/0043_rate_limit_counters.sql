-- The rate limiter keeps one row per user (or key) and bucket, updated in
-- place, instead of a row per counted attempt (issue 19, item 9): a fixed
-- window that opens with the first attempt counted after the last one closed,
-- and the attempts counted in it (docs/choices.md, "Rate limits").
-- No index but the primary key, and a fillfactor of 70: an update changes
-- neither key column, so with room left on its page it is a HOT update (no
-- index entry, the old version pruned by the next visit to the page).
-- The attempts counted in windows still open carry over, one window per user
-- and bucket from its oldest such attempt. The log itself stays until sql/ is
-- rebuilt: the functions serving requests right now still write it, and the
-- rebuild, in its one transaction, replaces them and then drops it
-- (sql/policies/99_retired.sql), so no moment has a function naming a table
-- that is gone. Attempts counted in the log between the two are not carried
-- over (the seconds of a migrate). Its rollback makes the log again from the
-- counters when the rebuild has dropped it.
-- depends: 0042_mail_lease

create table app.rate_limit_counters (
    user_id uuid not null,
    bucket text not null,
    window_start timestamptz not null,
    hits integer not null check (hits > 0),
    primary key (user_id, bucket)
) with (fillfactor = 70);
alter table app.rate_limit_counters enable row level security;

insert into app.rate_limit_counters (user_id, bucket, window_start, hits)
select h.user_id, h.bucket, min(h.created_at), count(*)
from app.rate_limit_hits h
join app.rate_limits l on l.bucket = h.bucket
where h.created_at > now() - make_interval(secs => l.window_seconds)
group by h.user_id, h.bucket;

