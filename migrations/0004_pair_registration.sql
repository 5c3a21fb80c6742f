-- Registrations, pair invitations and the mail outbox (seed flow 3).
-- depends: 0003_like_groups

-- Seats taken, kept by the functions that register and cancel; the check makes
-- overbooking impossible whatever the code does.
alter table app.events add column seats_taken integer not null default 0;
alter table app.events add constraint events_seats_check
    check (seats_taken >= 0 and (capacity is null or seats_taken <= capacity));

create table app.registrations (
    id uuid primary key default gen_random_uuid(),
    event_id uuid not null references app.events (id) on delete cascade,
    user_id uuid not null references auth.users (id) on delete cascade,
    status text not null default 'confirmed' check (status in ('confirmed', 'cancelled')),
    pair_id uuid,
    cancelled_at timestamptz,
    created_at timestamptz not null default now()
);
-- Nobody holds two confirmed registrations for one event.
create unique index registrations_one_confirmed_per_user
    on app.registrations (event_id, user_id) where status = 'confirmed';
create index registrations_event_id_idx on app.registrations (event_id);
create index registrations_user_id_idx on app.registrations (user_id);
create index registrations_pair_id_idx on app.registrations (pair_id) where pair_id is not null;
alter table app.registrations enable row level security;

-- 'expired' is not stored: an invite whose expires_at has passed is reported as
-- expired. Short codes are 8 characters without look-alikes, kept in upper case.
create table app.pair_invites (
    id uuid primary key default gen_random_uuid(),
    event_id uuid not null references app.events (id) on delete cascade,
    inviter_id uuid not null references auth.users (id) on delete cascade,
    invitee_email text,
    invitee_id uuid references auth.users (id) on delete set null,
    status text not null default 'sent'
        check (status in ('sent', 'accepted', 'declined', 'revoked')),
    short_code text not null unique check (short_code ~ '^[2-9A-HJKMNP-Z]{8}$'),
    pair_id uuid,
    expires_at timestamptz not null,
    accepted_at timestamptz,
    declined_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
-- One open invite per inviter and event (a new one revokes the previous).
create unique index pair_invites_one_open_per_inviter
    on app.pair_invites (event_id, inviter_id) where status = 'sent';
create index pair_invites_event_id_idx on app.pair_invites (event_id);
create index pair_invites_inviter_id_idx on app.pair_invites (inviter_id);
create index pair_invites_invitee_id_idx on app.pair_invites (invitee_id) where invitee_id is not null;
create index pair_invites_invitee_email_idx on app.pair_invites (lower(invitee_email))
    where invitee_email is not null;
alter table app.pair_invites enable row level security;

-- Tokens are handed out by join_pair_invite and kept only as SHA-256 hashes.
create table app.pair_invite_tokens (
    token_hash bytea primary key,
    invite_id uuid not null references app.pair_invites (id) on delete cascade,
    issued_to uuid references auth.users (id) on delete cascade,
    created_at timestamptz not null default now()
);
create index pair_invite_tokens_invite_id_idx on app.pair_invite_tokens (invite_id);
create index pair_invite_tokens_issued_to_idx on app.pair_invite_tokens (issued_to);
alter table app.pair_invite_tokens enable row level security;

-- Mail is queued in the transaction that decides to send it and delivered by
-- workers (python -m gateway mailer), one message per worker transaction.
create table app.mail_outbox (
    id uuid primary key default gen_random_uuid(),
    to_email text not null,
    template text not null,
    data jsonb not null default '{}'::jsonb,
    attempts integer not null default 0,
    send_after timestamptz not null default now(),
    last_error text,
    sent_at timestamptz,
    created_at timestamptz not null default now()
);
create index mail_outbox_due_idx on app.mail_outbox (send_after) where sent_at is null;
alter table app.mail_outbox enable row level security;
