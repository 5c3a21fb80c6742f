-- Lookup tables: what a code, a token or a like-group id leads to. On plain
-- PostgreSQL they are one more index probe per lookup; on a Citus cluster each
-- is distributed by the value looked up (gateway/tools/citus.py), so a lookup
-- reads one shard instead of every shard, and the row it finds names the
-- distribution key (group or event) of everything else the call touches.
-- The functions write a route in the same transaction as the row it leads to
-- (docs/scaling.md, "Routing"). Routes are never updated; a route whose row is
-- gone leads to a lookup that finds nothing (404), as before.
-- depends: 0031_webhooks

-- An invite code's hash -> its group.
create table app.group_invite_routes (
    code_hash bytea primary key,
    group_id uuid not null,
    created_at timestamptz not null default now()
);
create index group_invite_routes_group_id_idx on app.group_invite_routes (group_id);
alter table app.group_invite_routes enable row level security;
insert into app.group_invite_routes (code_hash, group_id, created_at)
select i.code_hash, i.group_id, i.created_at from app.group_invites i
on conflict do nothing;

-- A pair invite's short code -> its event. The primary key also makes short
-- codes unique across the whole cluster (the invites' own unique constraint
-- is per event there).
create table app.pair_code_routes (
    short_code text primary key,
    event_id uuid not null,
    created_at timestamptz not null default now()
);
create index pair_code_routes_event_id_idx on app.pair_code_routes (event_id);
alter table app.pair_code_routes enable row level security;
insert into app.pair_code_routes (short_code, event_id, created_at)
select i.short_code, i.event_id, i.created_at from app.pair_invites i
on conflict do nothing;

-- A pair-invite token's hash -> its event.
create table app.pair_token_routes (
    token_hash bytea primary key,
    event_id uuid not null,
    created_at timestamptz not null default now()
);
create index pair_token_routes_event_id_idx on app.pair_token_routes (event_id);
alter table app.pair_token_routes enable row level security;
insert into app.pair_token_routes (token_hash, event_id, created_at)
select t.token_hash, t.event_id, t.created_at from app.pair_invite_tokens t
on conflict do nothing;

-- A like group's id -> its event.
create table app.like_group_routes (
    id uuid primary key,
    event_id uuid not null,
    created_at timestamptz not null default now()
);
create index like_group_routes_event_id_idx on app.like_group_routes (event_id);
alter table app.like_group_routes enable row level security;
insert into app.like_group_routes (id, event_id, created_at)
select g.id, g.event_id, g.created_at from app.like_groups g
on conflict do nothing;
