drop index if exists app.mail_outbox_one_reminder_per_invite;
drop index if exists app.pair_invites_reminder_due_idx;
alter table app.pair_invites drop column if exists reminded_at;
alter table app.pair_invites drop column if exists resend_count;
alter table app.pair_invites drop column if exists locale;
alter table app.profiles drop column if exists locale;
