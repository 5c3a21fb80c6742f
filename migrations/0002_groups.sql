-- Groups, their members and invite codes (seed flow 1).
-- depends: 0001_foundation

create table app.groups (
    id uuid primary key default gen_random_uuid(),
    name text not null check (char_length(name) between 1 and 100),
    creator_id uuid not null references auth.users (id) on delete cascade,
    created_at timestamptz not null default now()
);
create index groups_creator_id_idx on app.groups (creator_id);
alter table app.groups enable row level security;

-- Invite codes are stored as SHA-256 hashes: a code is a bearer secret. Codes
-- are UUID v4 (122 random bits), so a plain hash cannot be reversed by search.
create table app.group_invites (
    id uuid primary key default gen_random_uuid(),
    group_id uuid not null references app.groups (id) on delete cascade,
    created_by uuid not null references auth.users (id) on delete cascade,
    code_hash bytea not null unique,
    code_hint text not null,
    expires_at timestamptz,
    max_uses integer check (max_uses >= 1),
    use_count integer not null default 0,
    revoked_at timestamptz,
    created_at timestamptz not null default now(),
    constraint group_invites_use_count_check
        check (use_count >= 0 and (max_uses is null or use_count <= max_uses))
);
create index group_invites_group_id_idx on app.group_invites (group_id);
create index group_invites_created_by_idx on app.group_invites (created_by);
alter table app.group_invites enable row level security;

create table app.group_members (
    group_id uuid not null references app.groups (id) on delete cascade,
    user_id uuid not null references auth.users (id) on delete cascade,
    role text not null default 'member' check (role in ('owner', 'member')),
    invite_id uuid references app.group_invites (id) on delete set null,
    created_at timestamptz not null default now(),
    primary key (group_id, user_id)
);
create index group_members_user_id_idx on app.group_members (user_id);
create index group_members_invite_id_idx on app.group_members (invite_id) where invite_id is not null;
alter table app.group_members enable row level security;
