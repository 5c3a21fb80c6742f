-- Invitations (issue 21, parts 2-5): a profile's language, the inviter's
-- language at invite time, resends counted per invite, reminders sent once.
-- depends: 0016_migrations_schema

-- The language a person reads mail in: 'en' or 'ca'; null until they choose
-- (then the mail falls back to the inviter's language, then English).
alter table app.profiles add column locale text
    constraint profiles_locale_check check (locale in ('en', 'ca'));

-- The inviter's language when the invite was made (Accept-Language, else their
-- profile's); resends made so far (at most 2); when the reminder was handled.
alter table app.pair_invites add column locale text
    constraint pair_invites_locale_check check (locale in ('en', 'ca'));
alter table app.pair_invites add column resend_count integer not null default 0
    constraint pair_invites_resend_count_check check (resend_count between 0 and 2);
alter table app.pair_invites add column reminded_at timestamptz;

-- Open emailed invites not reminded yet, by expiry: what the reminder pass reads.
create index pair_invites_reminder_due_idx on app.pair_invites (expires_at)
    where status = 'sent' and reminded_at is null and invitee_email is not null;

-- At most one reminder message per invite, whatever the code does.
create unique index mail_outbox_one_reminder_per_invite
    on app.mail_outbox ((data ->> 'invite_id')) where template = 'pair_invite_reminder';
