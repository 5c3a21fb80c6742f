-- Lets the rate limiter prune hits of users who never come back (by age).
-- depends: 0004_pair_registration

create index rate_limit_hits_created_at_idx on app.rate_limit_hits (created_at);
