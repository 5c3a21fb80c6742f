-- The log of hits as migrations 0001 and 0005 made it, one hit per attempt
-- counted in a window still open (at the window's start), when the rebuild of
-- sql/ has dropped it (if it is still there, it still holds the attempts).
-- The functions in sql/ use these tables: clear the code mark so that the next
-- migrate rebuilds sql/.
create table if not exists app.rate_limit_hits (
    id bigint generated always as identity primary key,
    user_id uuid not null,
    bucket text not null,
    created_at timestamptz not null default now()
);
create index if not exists rate_limit_hits_user_bucket_created_idx
    on app.rate_limit_hits (user_id, bucket, created_at);
create index if not exists rate_limit_hits_created_at_idx on app.rate_limit_hits (created_at);
alter table app.rate_limit_hits enable row level security;

insert into app.rate_limit_hits (user_id, bucket, created_at)
select c.user_id, c.bucket, c.window_start
from app.rate_limit_counters c
join app.rate_limits l on l.bucket = c.bucket
cross join generate_series(1, c.hits)
where c.window_start > now() - make_interval(secs => l.window_seconds)
  and not exists (select from app.rate_limit_hits);

drop table app.rate_limit_counters;
comment on schema api is null;
