-- cascade: the functions of sql/ that take these tables' row types go with them
-- (the next migrate rebuilds sql/).
drop table if exists app.webhook_attempts cascade;
drop table if exists app.webhook_deliveries cascade;
drop table if exists app.webhook_events cascade;
drop table if exists app.webhook_endpoints cascade;
comment on schema api is null;
