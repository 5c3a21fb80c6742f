-- Friendships, events with authors, like groups with members and approvals,
-- chats and notifications (seed flow 2).
-- depends: 0002_groups

-- One row per pair of people, smaller id first; requester_id says who asked.
create table app.friendships (
    user_low uuid not null references auth.users (id) on delete cascade,
    user_high uuid not null references auth.users (id) on delete cascade,
    requester_id uuid not null references auth.users (id) on delete cascade,
    status text not null default 'pending' check (status in ('pending', 'accepted')),
    accepted_at timestamptz,
    created_at timestamptz not null default now(),
    primary key (user_low, user_high),
    constraint friendships_ordered check (user_low < user_high),
    constraint friendships_requester_is_party check (requester_id in (user_low, user_high))
);
create index friendships_user_high_idx on app.friendships (user_high);
create index friendships_requester_id_idx on app.friendships (requester_id);
alter table app.friendships enable row level security;

create table app.events (
    id uuid primary key default gen_random_uuid(),
    creator_id uuid not null references auth.users (id) on delete cascade,
    title text not null check (char_length(title) between 1 and 200),
    starts_at timestamptz,
    registration_deadline timestamptz,
    capacity integer check (capacity > 0),
    status text not null default 'open' check (status in ('open', 'closed', 'cancelled')),
    created_at timestamptz not null default now()
);
create index events_creator_id_idx on app.events (creator_id);
alter table app.events enable row level security;

create table app.event_authors (
    event_id uuid not null references app.events (id) on delete cascade,
    user_id uuid not null references auth.users (id) on delete cascade,
    created_at timestamptz not null default now(),
    primary key (event_id, user_id)
);
create index event_authors_user_id_idx on app.event_authors (user_id);
alter table app.event_authors enable row level security;

create table app.like_groups (
    id uuid primary key default gen_random_uuid(),
    event_id uuid not null references app.events (id) on delete cascade,
    creator_id uuid not null references auth.users (id) on delete cascade,
    status text not null default 'pending' check (status in ('pending', 'approved', 'rejected')),
    decided_at timestamptz,
    created_at timestamptz not null default now(),
    constraint like_groups_id_event_key unique (id, event_id)
);
create index like_groups_event_id_idx on app.like_groups (event_id);
create index like_groups_creator_id_idx on app.like_groups (creator_id);
alter table app.like_groups enable row level security;

-- event_id is copied from the group (the composite key keeps it equal) so that a
-- partial unique index can say: nobody is in two pending groups of one event.
-- `pending` is cleared for every member when the group is decided.
create table app.like_group_members (
    group_id uuid not null,
    event_id uuid not null,
    user_id uuid not null references auth.users (id) on delete cascade,
    pending boolean not null default true,
    created_at timestamptz not null default now(),
    primary key (group_id, user_id),
    constraint like_group_members_group_fkey foreign key (group_id, event_id)
        references app.like_groups (id, event_id) on delete cascade
);
create unique index like_group_members_one_pending_per_event
    on app.like_group_members (event_id, user_id) where pending;
create index like_group_members_user_id_idx on app.like_group_members (user_id);
create index like_group_members_group_event_idx on app.like_group_members (group_id, event_id);
alter table app.like_group_members enable row level security;

-- One decision per author and group: approved true, or false for a rejection.
create table app.like_group_approvals (
    id uuid primary key default gen_random_uuid(),
    group_id uuid not null references app.like_groups (id) on delete cascade,
    author_id uuid not null references auth.users (id) on delete cascade,
    approved boolean not null,
    created_at timestamptz not null default now(),
    constraint like_group_approvals_one_per_author unique (group_id, author_id)
);
create index like_group_approvals_author_id_idx on app.like_group_approvals (author_id);
alter table app.like_group_approvals enable row level security;

create table app.chats (
    id uuid primary key default gen_random_uuid(),
    type text not null check (type in ('approved_group')),
    like_group_id uuid unique references app.like_groups (id) on delete cascade,
    created_at timestamptz not null default now()
);
alter table app.chats enable row level security;

create table app.chat_participants (
    chat_id uuid not null references app.chats (id) on delete cascade,
    user_id uuid not null references auth.users (id) on delete cascade,
    created_at timestamptz not null default now(),
    primary key (chat_id, user_id)
);
create index chat_participants_user_id_idx on app.chat_participants (user_id);
alter table app.chat_participants enable row level security;

create table app.notifications (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null references auth.users (id) on delete cascade,
    type text not null,
    data jsonb not null default '{}'::jsonb,
    read_at timestamptz,
    created_at timestamptz not null default now()
);
create index notifications_user_id_created_at_idx on app.notifications (user_id, created_at desc);
alter table app.notifications enable row level security;
