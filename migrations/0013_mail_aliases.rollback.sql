create index mail_outbox_to_email_created_at_idx on app.mail_outbox (to_email, created_at);
drop index app.mail_outbox_recipient_created_at_idx;
alter table app.mail_stops drop constraint mail_stops_email_canonical;
drop function app.canonical_email(text);
