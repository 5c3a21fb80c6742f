-- Hardening (issue 11): names and titles without control characters, mail
-- delivery that gives up, per-recipient invitation mail limits, refused
-- attempts counted per window, and the audit log in monthly partitions that
-- an operator can drop past an age (python -m gateway audit-prune).
-- depends: 0007_mail_stops

-- Names and titles: no control characters (C0, DEL, C1, line and paragraph
-- separators, bidirectional overrides and isolates). Existing values are
-- cleaned first: each run of them, with the spaces around it, becomes one space.
update app.profiles p set display_name = coalesce(nullif(pg_catalog.btrim(pg_catalog.regexp_replace(
    p.display_name, '\s*[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+\s*', ' ', 'g')), ''), 'user')
where p.display_name ~ '[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]';
update app.groups g set name = coalesce(nullif(pg_catalog.btrim(pg_catalog.regexp_replace(
    g.name, '\s*[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+\s*', ' ', 'g')), ''), 'group')
where g.name ~ '[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]';
update app.events e set title = coalesce(nullif(pg_catalog.btrim(pg_catalog.regexp_replace(
    e.title, '\s*[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+\s*', ' ', 'g')), ''), 'event')
where e.title ~ '[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]';
alter table app.profiles add constraint profiles_display_name_plain
    check (display_name !~ '[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]');
alter table app.groups add constraint groups_name_plain
    check (name !~ '[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]');
alter table app.events add constraint events_title_plain
    check (title !~ '[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]');

-- A message that failed too often (or can never be built) is marked failed
-- and never tried again.
alter table app.mail_outbox add column failed_at timestamptz;
drop index app.mail_outbox_due_idx;
create index mail_outbox_due_idx on app.mail_outbox (send_after)
    where sent_at is null and cancelled_at is null and failed_at is null;
create index mail_outbox_failed_at_idx on app.mail_outbox (failed_at) where failed_at is not null;

-- New limits. invite_mail counts per recipient address, across inviters.
insert into app.rate_limits (bucket, max_attempts, window_seconds, description) values
    ('invite_mail', 3, 86400,
     'invitation mail to one recipient address, from all inviters together; over it the '
     'invite is still created but no mail is sent'),
    ('revoke_invite', 20, 60, 'revoking group invites by code or id')
on conflict (bucket) do nothing;

-- Refused attempts (429) counted per user, action and window: one row, not
-- one per attempt.
create table app.audit_refusals (
    actor_id uuid not null,
    action text not null,
    outcome text not null,
    window_start timestamptz not null,
    refused integer not null default 1 check (refused > 0),
    last_at timestamptz not null default now(),
    created_at timestamptz not null default now(),
    primary key (actor_id, action, outcome, window_start)
);
create index audit_refusals_window_start_idx on app.audit_refusals (window_start);
alter table app.audit_refusals enable row level security;

-- The audit log in monthly partitions (UTC months), its rows kept. A default
-- partition takes rows of months that have no partition yet.
--
-- A log of up to joinery.audit_copy_max_rows rows (a setting of the migrating
-- session, e.g. PGOPTIONS='-c joinery.audit_copy_max_rows=0'; default
-- 1,000,000) is copied into monthly partitions. A bigger one is not copied:
-- the old table itself becomes one partition, app.audit_log_legacy, for
-- everything before next month (FROM (MINVALUE)), and monthly partitions
-- start next month. Attaching writes no row: it builds the (id, created_at)
-- key's index and reads the table once to check the range, where the copy
-- wrote every row, every index entry and their WAL again. Its retention is
-- coarser: prune drops it whole once its last month is past the retention.
-- (Databases that ran this migration before this path existed are unchanged:
-- yoyo never runs a migration twice.)
alter table app.audit_log rename to audit_log_unpartitioned;
alter table app.audit_log_unpartitioned rename constraint audit_log_pkey
    to audit_log_unpartitioned_pkey;
alter index app.audit_log_actor_id_created_at_idx rename to audit_log_unpartitioned_actor_idx;
alter index app.audit_log_subject_id_idx rename to audit_log_unpartitioned_subject_idx;
alter sequence app.audit_log_id_seq rename to audit_log_unpartitioned_id_seq;

create table app.audit_log (
    id bigint generated always as identity,
    actor_id uuid,
    action text not null,
    outcome text not null,
    status integer not null,
    subject_id uuid,
    details jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now(),
    primary key (id, created_at)
) partition by range (created_at);
create index audit_log_actor_id_created_at_idx on app.audit_log (actor_id, created_at);
create index audit_log_subject_id_idx on app.audit_log (subject_id) where subject_id is not null;
alter table app.audit_log enable row level security;
create table app.audit_log_default partition of app.audit_log default;
alter table app.audit_log_default enable row level security;

do $partitions$
declare
    v_attach boolean := (
        select pg_catalog.count(*) from (select from app.audit_log_unpartitioned o
            limit coalesce(nullif(pg_catalog.current_setting(
                'joinery.audit_copy_max_rows', true), '')::bigint, 1000000) + 1) x)
        > coalesce(nullif(pg_catalog.current_setting(
            'joinery.audit_copy_max_rows', true), '')::bigint, 1000000);
    v_next timestamptz := pg_catalog.date_trunc('month', pg_catalog.now(), 'UTC') + interval '1 month';
    v_first timestamptz := pg_catalog.date_trunc('month', coalesce(
        (select pg_catalog.min(o.created_at) from app.audit_log_unpartitioned o),
        pg_catalog.now()), 'UTC');
    v_month timestamptz;
    v_name text;
begin
    if v_attach then
        v_first := v_next;
        -- The old table as it is: its own key, identity and triggers give way
        -- to the partitioned table's (the triggers are made again on it by the
        -- rebuild of sql/, and cloned to every partition).
        drop trigger if exists audit_log_append_only on app.audit_log_unpartitioned;
        drop trigger if exists audit_log_no_truncate on app.audit_log_unpartitioned;
        alter table app.audit_log_unpartitioned alter column id drop identity;
        alter table app.audit_log_unpartitioned drop constraint audit_log_unpartitioned_pkey;
        alter table app.audit_log_unpartitioned rename to audit_log_legacy;
        execute pg_catalog.format(
            'alter table app.audit_log attach partition app.audit_log_legacy '
            'for values from (minvalue) to (%L)', v_next);
    end if;
    for v_month in
        select pg_catalog.generate_series(
            v_first,
            pg_catalog.date_trunc('month', pg_catalog.now(), 'UTC') + interval '3 months',
            interval '1 month')
    loop
        v_name := 'audit_log_p' || pg_catalog.to_char(v_month at time zone 'UTC', 'YYYYMM');
        execute pg_catalog.format(
            'create table app.%I partition of app.audit_log for values from (%L) to (%L)',
            v_name, v_month, v_month + interval '1 month');
        execute pg_catalog.format('alter table app.%I enable row level security', v_name);
    end loop;
    if not v_attach then
        insert into app.audit_log (id, actor_id, action, outcome, status, subject_id, details,
                                   created_at)
        overriding system value
        select o.id, o.actor_id, o.action, o.outcome, o.status, o.subject_id, o.details,
               o.created_at
        from app.audit_log_unpartitioned o;
        drop table app.audit_log_unpartitioned;
    end if;
end
$partitions$;

do $sequence$
begin
    perform pg_catalog.setval(pg_catalog.pg_get_serial_sequence('app.audit_log', 'id'),
        coalesce((select pg_catalog.max(a.id) from app.audit_log a), 0) + 1, false);
end
$sequence$;

-- Functions, triggers and policies in sql/ go with the old table: rebuild them.
comment on schema api is null;
