-- Webhooks following the Standard Webhooks specification: endpoints managed by
-- service_role, an outbox of events written in the transaction of the change
-- they describe, one delivery row per (event, endpoint) that workers lease
-- (SKIP LOCKED), and a log of every attempt. No API role reads these tables:
-- only the functions in sql/functions/85_webhooks.sql do (no grants, RLS on,
-- no policies). The signing secrets are kept as they are (see the README,
-- "Webhooks": a signing key must be usable for HMAC, so it cannot be hashed).
-- depends: 0030_invitations

create table app.webhook_endpoints (
    id uuid primary key default gen_random_uuid(),
    url text not null check (url ~ '^https?://[^\s/?#@]+(/[^\s]*)?$' and length(url) <= 2048),
    event_types text[] not null check (cardinality(event_types) between 1 and 32),
    description text check (length(description) <= 500),
    enabled boolean not null default true,
    include_emails boolean not null default false,
    -- 32 random bytes; the secret shown once is 'whsec_' || base64(secret).
    secret bytea not null check (length(secret) = 32),
    -- After a rotation the previous secret signs beside the new one until then.
    previous_secret bytea check (length(previous_secret) = 32),
    previous_secret_until timestamptz,
    -- Set by the first failure after a success; the endpoint is disabled once
    -- it has failed for WEBHOOK_DISABLE_AFTER.
    failing_since timestamptz,
    disabled_at timestamptz,
    disabled_reason text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
-- Fan-out at write time looks up the enabled endpoints subscribed to a type.
create index webhook_endpoints_event_types_idx on app.webhook_endpoints
    using gin (event_types) where enabled;
alter table app.webhook_endpoints enable row level security;

-- The outbox: one row per event, ids only in data; addresses (for endpoints
-- that opted in) apart in emails.
create table app.webhook_events (
    id uuid primary key default gen_random_uuid(),
    type text not null check (type ~ '^[a-z_]+\.[a-z_]+$'),
    data jsonb not null,
    emails jsonb,
    created_at timestamptz not null default now()
);
create index webhook_events_created_at_idx on app.webhook_events (created_at);
alter table app.webhook_events enable row level security;

-- One message per event and endpoint: pending until delivered or failed.
create table app.webhook_deliveries (
    id uuid primary key default gen_random_uuid(),
    event_id uuid not null references app.webhook_events (id) on delete cascade,
    endpoint_id uuid not null references app.webhook_endpoints (id) on delete cascade,
    status text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    -- A worker's lease: nobody else takes the row before locked_until; the
    -- worker marks the outcome only while its lease is the row's.
    locked_until timestamptz,
    lease uuid,
    delivered_at timestamptz,
    failed_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint webhook_deliveries_event_endpoint_key unique (event_id, endpoint_id)
);
create index webhook_deliveries_due_idx on app.webhook_deliveries (next_attempt_at)
    where status = 'pending';
create index webhook_deliveries_endpoint_id_idx on app.webhook_deliveries (endpoint_id);
create index webhook_deliveries_failed_idx on app.webhook_deliveries (failed_at)
    where status = 'failed';
alter table app.webhook_deliveries enable row level security;

-- Every attempt: HTTP status (null when none came), latency, an excerpt of the
-- answer (at most 1 KB) or the error.
create table app.webhook_attempts (
    id bigint generated always as identity primary key,
    delivery_id uuid not null references app.webhook_deliveries (id) on delete cascade,
    endpoint_id uuid not null references app.webhook_endpoints (id) on delete cascade,
    event_id uuid not null references app.webhook_events (id) on delete cascade,
    attempt integer not null,
    status_code integer,
    latency_ms integer,
    response_excerpt text check (octet_length(response_excerpt) <= 1024),
    error text check (length(error) <= 500),
    created_at timestamptz not null default now()
);
create index webhook_attempts_delivery_id_idx on app.webhook_attempts (delivery_id);
create index webhook_attempts_endpoint_id_idx on app.webhook_attempts (endpoint_id, id);
create index webhook_attempts_event_id_idx on app.webhook_attempts (event_id);
alter table app.webhook_attempts enable row level security;

-- Functions in sql/ use these tables: clear the code mark so that the next
-- migrate rebuilds sql/.
comment on schema api is null;
