-- Recipients who asked for no more invitation mail, the links that ask for it,
-- and messages cancelled because of it.
-- depends: 0005_rate_limit_prune

-- Addresses (lower case) that get no more invitation mail.
create table app.mail_stops (
    email text primary key check (email = lower(email)),
    created_at timestamptz not null default now()
);
alter table app.mail_stops enable row level security;

-- Each invitation message carries a stop link with a new token (256 random
-- bits) for its recipient address; only the token's SHA-256 is kept.
create table app.mail_stop_tokens (
    token_hash bytea primary key,
    email text not null check (email = lower(email)),
    created_at timestamptz not null default now()
);
create index mail_stop_tokens_email_idx on app.mail_stop_tokens (email);
alter table app.mail_stop_tokens enable row level security;

-- A queued message whose recipient stopped invitations is never sent.
alter table app.mail_outbox add column cancelled_at timestamptz;
drop index app.mail_outbox_due_idx;
create index mail_outbox_due_idx on app.mail_outbox (send_after)
    where sent_at is null and cancelled_at is null;
-- Messages by recipient: cancelling on a stop, counting per address.
create index mail_outbox_to_email_created_at_idx on app.mail_outbox (to_email, created_at);
