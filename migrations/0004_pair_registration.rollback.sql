drop table if exists app.mail_outbox cascade;
drop table if exists app.pair_invite_tokens cascade;
drop table if exists app.pair_invites cascade;
drop table if exists app.registrations cascade;
alter table app.events drop constraint if exists events_seats_check;
alter table app.events drop column if exists seats_taken;
comment on schema api is null;
