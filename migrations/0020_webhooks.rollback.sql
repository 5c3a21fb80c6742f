drop table if exists app.webhook_attempts;
drop table if exists app.webhook_deliveries;
drop table if exists app.webhook_events;
drop table if exists app.webhook_endpoints;
comment on schema api is null;
