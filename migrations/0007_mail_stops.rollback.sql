-- Functions in sql/ use these tables and the column: clear the code mark so
-- that the next migrate rebuilds sql/.
drop index if exists app.mail_outbox_to_email_created_at_idx;
drop index if exists app.mail_outbox_due_idx;
create index mail_outbox_due_idx on app.mail_outbox (send_after) where sent_at is null;
alter table app.mail_outbox drop column if exists cancelled_at;
drop table if exists app.mail_stop_tokens;
drop table if exists app.mail_stops;
comment on schema api is null;
