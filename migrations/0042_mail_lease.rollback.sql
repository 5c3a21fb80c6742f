alter table app.mail_outbox drop column if exists locked_until;
