-- Grants and policies of the foundation's tables. Tables are readable through
-- RLS by signed-in users where a policy allows it; nobody but the api
-- functions (running as the owner) writes them.

-- Profiles
grant select on app.profiles to authenticated, service_role;
create policy "Users can read their own profile" on app.profiles
    for select to authenticated
    using (id = (select auth.uid()));

-- Audit log
grant select on app.audit_log to authenticated, service_role;
create policy "Users can read their own audit entries" on app.audit_log
    for select to authenticated
    using (actor_id = (select auth.uid()));

-- Rate limits: the numbers are public to signed-in users; counters are their own.
grant select on app.rate_limits to authenticated, service_role;
create policy "Signed-in users can read the rate limits" on app.rate_limits
    for select to authenticated
    using (true);

grant select on app.rate_limit_counters to authenticated, service_role;
create policy "Users can read their own rate limit counters" on app.rate_limit_counters
    for select to authenticated
    using (user_id = (select auth.uid()));

-- Refused attempts counted per window: each user reads their own.
grant select on app.audit_refusals to authenticated, service_role;
create policy "Users can read their own refusal counts" on app.audit_refusals
    for select to authenticated
    using (actor_id = (select auth.uid()));
