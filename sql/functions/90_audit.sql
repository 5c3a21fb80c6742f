-- Audit retention: app.audit_log is partitioned by month (UTC) of created_at,
-- with a default partition for months that have none. An operator runs
-- `python -m gateway audit-prune` (say, daily or monthly): it adds the coming
-- months' partitions and drops those past the retention age. Neither function
-- is granted to anyone: they run as the owner (the migrating role).

/**
 * Creates the partitions of the current month and the `months_ahead` next
 * ones where missing; a month whose rows already sit in the default partition
 * stays there. Returns the names of the partitions created.
 */
create function private.audit_add_partitions(months_ahead integer default 3)
returns setof text
language plpgsql volatile
set search_path = ''
as $$
declare
    v_month timestamptz;
    v_name text;
begin
    for v_month in
        select pg_catalog.generate_series(
            pg_catalog.date_trunc('month', pg_catalog.now(), 'UTC'),
            pg_catalog.date_trunc('month', pg_catalog.now(), 'UTC')
                + pg_catalog.make_interval(months => greatest(months_ahead, 0)),
            interval '1 month')
    loop
        v_name := 'audit_log_p' || pg_catalog.to_char(v_month at time zone 'UTC', 'YYYYMM');
        continue when pg_catalog.to_regclass('app.' || v_name) is not null;
        continue when exists (select from app.audit_log_default d
                              where d.created_at >= v_month
                                and d.created_at < v_month + interval '1 month');
        execute pg_catalog.format(
            'create table app.%I partition of app.audit_log for values from (%L) to (%L)',
            v_name, v_month, v_month + interval '1 month');
        execute pg_catalog.format('alter table app.%I enable row level security', v_name);
        return next v_name;
    end loop;
end;
$$;

/**
 * Drops the monthly audit partitions whose whole month is older than
 * `older_than`, deletes older rows of the default partition, and deletes
 * refusal counts (app.audit_refusals) of windows older than that. Returns one
 * line per thing removed ('dropped app.audit_log_p202401', 'deleted 12 rows
 * of app.audit_log_default', ...).
 */
create function private.audit_prune(older_than interval) returns setof text
language plpgsql volatile
set search_path = ''
as $$
declare
    v_cutoff timestamptz := pg_catalog.now() - older_than;
    v_part record;
    v_count bigint;
begin
    if older_than < interval '1 day' then
        raise exception using errcode = '22023', message = 'Keep at least one day of audit entries.';
    end if;
    for v_part in
        select c.relname::text as name,
               pg_catalog.to_timestamp(pg_catalog.substr(c.relname, 12), 'YYYYMM')::timestamp
                   at time zone 'UTC' + interval '1 month' as upper_bound
        from pg_catalog.pg_inherits i
        join pg_catalog.pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'app.audit_log'::regclass and c.relname ~ '^audit_log_p[0-9]{6}$'
        order by c.relname
    loop
        if v_part.upper_bound <= v_cutoff then
            execute pg_catalog.format('drop table app.%I', v_part.name);
            return next 'dropped app.' || v_part.name;
        end if;
    end loop;
    -- SET LOCAL rather than set_config: on a Citus cluster the append-only
    -- trigger runs on the workers, which a SET LOCAL reaches
    -- (citus.propagate_set_commands = local) and set_config does not.
    set local joinery.audit_prune = 'on';
    delete from app.audit_log_default d where d.created_at < v_cutoff;
    get diagnostics v_count = row_count;
    set local joinery.audit_prune = 'off';
    if v_count > 0 then
        return next pg_catalog.format('deleted %s rows of app.audit_log_default', v_count);
    end if;
    delete from app.audit_refusals r where r.window_start < v_cutoff;
    get diagnostics v_count = row_count;
    if v_count > 0 then
        return next pg_catalog.format('deleted %s rows of app.audit_refusals', v_count);
    end if;
end;
$$;

/**
 * Retention of what grows without bound beside the audit log, run by
 * `python -m gateway audit-prune` with the same age: outbox messages sent
 * longer ago than `older_than`, and notifications read longer ago. Unsent,
 * failed and cancelled messages and unread notifications are kept. Returns one
 * line per table with rows deleted.
 */
create function private.retention_prune(older_than interval) returns setof text
language plpgsql volatile
set search_path = ''
as $$
declare
    v_cutoff timestamptz := pg_catalog.now() - older_than;
    v_count bigint;
begin
    if older_than < interval '1 day' then
        raise exception using errcode = '22023', message = 'Keep at least one day of entries.';
    end if;
    delete from app.mail_outbox m where m.sent_at < v_cutoff;
    get diagnostics v_count = row_count;
    if v_count > 0 then
        return next pg_catalog.format('deleted %s sent messages of app.mail_outbox', v_count);
    end if;
    delete from app.notifications n where n.read_at < v_cutoff;
    get diagnostics v_count = row_count;
    if v_count > 0 then
        return next pg_catalog.format('deleted %s read rows of app.notifications', v_count);
    end if;
end;
$$;
