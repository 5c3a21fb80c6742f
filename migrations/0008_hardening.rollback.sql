-- Back to one unpartitioned audit log, its rows kept; the other changes undone.
alter table app.audit_log rename to audit_log_partitioned;
alter table app.audit_log_partitioned rename constraint audit_log_pkey
    to audit_log_partitioned_pkey;
alter index app.audit_log_actor_id_created_at_idx rename to audit_log_partitioned_actor_idx;
alter index app.audit_log_subject_id_idx rename to audit_log_partitioned_subject_idx;
alter sequence app.audit_log_id_seq rename to audit_log_partitioned_id_seq;

create table app.audit_log (
    id bigint generated always as identity primary key,
    actor_id uuid,
    action text not null,
    outcome text not null,
    status integer not null,
    subject_id uuid,
    details jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now()
);
insert into app.audit_log (id, actor_id, action, outcome, status, subject_id, details, created_at)
overriding system value
select o.id, o.actor_id, o.action, o.outcome, o.status, o.subject_id, o.details, o.created_at
from app.audit_log_partitioned o;
do $sequence$
begin
    perform pg_catalog.setval(pg_catalog.pg_get_serial_sequence('app.audit_log', 'id'),
        coalesce((select pg_catalog.max(o.id) from app.audit_log_partitioned o), 0) + 1, false);
end
$sequence$;
drop table app.audit_log_partitioned;
create index audit_log_actor_id_created_at_idx on app.audit_log (actor_id, created_at);
create index audit_log_subject_id_idx on app.audit_log (subject_id) where subject_id is not null;
alter table app.audit_log enable row level security;

drop table if exists app.audit_refusals;
delete from app.rate_limits where bucket in ('invite_mail', 'revoke_invite');
drop index if exists app.mail_outbox_failed_at_idx;
drop index if exists app.mail_outbox_due_idx;
create index mail_outbox_due_idx on app.mail_outbox (send_after)
    where sent_at is null and cancelled_at is null;
alter table app.mail_outbox drop column if exists failed_at;
alter table app.events drop constraint if exists events_title_plain;
alter table app.groups drop constraint if exists groups_name_plain;
alter table app.profiles drop constraint if exists profiles_display_name_plain;
comment on schema api is null;
