-- Retention: app.audit_log is partitioned by month (UTC) of created_at, with
-- a default partition for months that have none. `python -m gateway prune`
-- (say, daily; `audit-prune` is its older name) adds the coming months'
-- partitions, detaches and drops those past the retention age, and deletes
-- what else has outlived it (retention_prune). `migrate` adds the coming
-- partitions too. None of these functions is granted to anyone: they run as
-- the owner (the migrating role).

/**
 * Creates the partitions of the current month and the `months_ahead` next
 * ones where missing; a month whose rows already sit in the default partition
 * stays there, and a month another partition covers is skipped. Returns the
 * names of the partitions created.
 */
create function private.audit_add_partitions(months_ahead integer default 3)
returns setof text
language plpgsql volatile
set search_path = ''
as $$
declare
    v_month timestamptz;
    v_name text;
    v_stranded boolean;
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
        -- A partition of another shape covering the month (app.audit_log_legacy,
        -- up to the month after migration 0008 attached it).
        continue when exists (
            select from pg_catalog.pg_inherits i
            join pg_catalog.pg_class c on c.oid = i.inhrelid
            cross join lateral (select pg_catalog.pg_get_expr(c.relpartbound, c.oid) as b) x
            where i.inhparent = 'app.audit_log'::regclass and x.b <> 'DEFAULT'
              and pg_catalog.substring(x.b, 'TO \(''([^'']+)''\)')::timestamptz > v_month
              and coalesce(pg_catalog.substring(x.b, 'FROM \(''([^'']+)''\)')::timestamptz,
                           '-infinity') < v_month + interval '1 month');
        if pg_catalog.to_regclass('app.audit_log_default') is not null then
            execute 'select exists (select from app.audit_log_default d '
                    'where d.created_at >= $1 and d.created_at < $1 + interval ''1 month'')'
                into v_stranded using v_month;
            continue when v_stranded;
        end if;
        execute pg_catalog.format(
            'create table app.%I partition of app.audit_log for values from (%L) to (%L)',
            v_name, v_month, v_month + interval '1 month');
        execute pg_catalog.format('alter table app.%I enable row level security', v_name);
        return next v_name;
    end loop;
end;
$$;

/**
 * The partitions of app.audit_log whose whole range ends before now() minus
 * `older_than` (read from each partition's bound, whatever its name; the
 * default partition never), with whether a DETACH ... CONCURRENTLY of it was
 * interrupted (it then needs DETACH ... FINALIZE): those first, as PostgreSQL
 * detaches no other partition while one is pending; then oldest first.
 */
create function private.audit_expired_partitions(older_than interval,
                                                 out name text, out detach_pending boolean)
returns setof record
language plpgsql stable
set search_path = ''
as $$
begin
    return query
    select x.relname, x.pending
    from (select c.relname::text as relname, i.inhdetachpending as pending,
                 pg_catalog.substring(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                      'TO \(''([^'']+)''\)')::timestamptz as upper_bound
          from pg_catalog.pg_inherits i
          join pg_catalog.pg_class c on c.oid = i.inhrelid
          where i.inhparent = 'app.audit_log'::regclass) x
    where x.upper_bound <= pg_catalog.now() - older_than
    order by x.pending desc, x.upper_bound;
end;
$$;

/**
 * Deletes the rows of `tab` whose `col` is before `cutoff`, in one statement,
 * and returns one line, 'deleted <n> <what> of <tab>', when it deleted any (no
 * line otherwise). The one delete-and-report step of audit_prune and
 * retention_prune. `tab` and `col` come from their text, never from a caller;
 * the statement is built with the table's qualified name and the column
 * quoted. Not a hot path: on a Citus cluster the delete runs on every shard,
 * as it did when each prune wrote it out.
 */
create function private.prune_older_rows(tab regclass, col name, cutoff timestamptz, what text)
returns setof text
language plpgsql volatile
set search_path = ''
as $$
declare
    v_count bigint;
begin
    execute pg_catalog.format('delete from %s t where t.%I < $1', tab, col) using cutoff;
    get diagnostics v_count = row_count;
    if v_count > 0 then
        return next pg_catalog.format('deleted %s %s of %s', v_count, what, tab);
    end if;
end;
$$;

/**
 * Drops the audit partitions whose whole range is older than `older_than`
 * (private.audit_expired_partitions; `python -m gateway prune` detaches them
 * first, outside a transaction, so none is left here), deletes older rows of
 * the default partition, and deletes refusal counts (app.audit_refusals) of
 * windows older than that. Returns one line per thing removed ('dropped
 * app.audit_log_p202401', 'deleted 12 rows of app.audit_log_default', ...).
 */
create function private.audit_prune(older_than interval) returns setof text
language plpgsql volatile
set search_path = ''
as $$
declare
    v_cutoff timestamptz := pg_catalog.now() - older_than;
    v_part record;
begin
    if older_than < interval '1 day' then
        raise exception using errcode = '22023', message = 'Keep at least one day of audit entries.';
    end if;
    for v_part in select p.name from private.audit_expired_partitions(older_than) p loop
        execute pg_catalog.format('drop table app.%I', v_part.name);
        return next 'dropped app.' || v_part.name;
    end loop;
    -- SET LOCAL rather than set_config: on a Citus cluster the append-only
    -- trigger runs on the workers, which a SET LOCAL reaches
    -- (citus.propagate_set_commands = local) and set_config does not.
    -- An operator may have dropped the default partition (see prune).
    if pg_catalog.to_regclass('app.audit_log_default') is not null then
        -- The name is resolved when this runs (not when it is planned), so
        -- the delete is built at run time too (private.prune_older_rows).
        set local joinery.audit_prune = 'on';
        return query select * from private.prune_older_rows(
            pg_catalog.to_regclass('app.audit_log_default'), 'created_at', v_cutoff, 'rows');
        set local joinery.audit_prune = 'off';
    end if;
    return query select * from private.prune_older_rows(
        'app.audit_refusals', 'window_start', v_cutoff, 'rows');
end;
$$;

/**
 * Rows of the audit log's default partition (counted up to 100,000), which
 * should stay 0: a row lands there only when its month has no partition
 * (audit_add_partitions, run by migrate and prune, makes them three months
 * ahead); 0 when an operator dropped the default partition. The gateway's
 * joinery_audit_default_rows gauge; an alert fires on any.
 */
create function private.audit_default_rows() returns bigint
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_rows bigint := 0;
begin
    if pg_catalog.to_regclass('app.audit_log_default') is not null then  -- dropped: none
        -- `select 1`: Citus cannot plan a subquery of no columns with a limit.
        execute 'select pg_catalog.count(*) from '
                '(select 1 from app.audit_log_default d limit 100000) x' into v_rows;
    end if;
    return v_rows;
end;
$$;
grant execute on function private.audit_default_rows() to service_role;

/**
 * Retention of what grows without bound beside the audit log, run by
 * `python -m gateway prune` with the same age:
 * - outbox messages sent longer ago than `older_than`, and notifications read
 *   longer ago (unsent, failed and cancelled messages, unread notifications
 *   kept);
 * - pair-invite tokens (one per join_pair_invite) of invites closed longer ago:
 *   accepted, declined or revoked before the cutoff, or still 'sent' but
 *   expired before it; with their routes (app.pair_token_routes). A token of an
 *   invite that is open, or closed more recently, is kept;
 * - stop tokens (one per invitation message sent) made longer ago: the stop
 *   link of a message older than the retention answers 404 from then on; the
 *   stop itself (app.mail_stops) is kept for ever.
 * Deleted in batches of 5,000. Returns one line per table with rows deleted.
 */
create function private.retention_prune(older_than interval) returns setof text
language plpgsql volatile
set search_path = ''
as $$
declare
    v_cutoff timestamptz := pg_catalog.now() - older_than;
    v_count bigint;
    v_batch bytea[];
    v_tokens bigint := 0;
    v_routes bigint := 0;
begin
    if older_than < interval '1 day' then
        raise exception using errcode = '22023', message = 'Keep at least one day of entries.';
    end if;
    return query select * from private.prune_older_rows(
        'app.mail_outbox', 'sent_at', v_cutoff, 'sent messages');
    return query select * from private.prune_older_rows(
        'app.notifications', 'read_at', v_cutoff, 'read rows');
    -- Tokens by their invite (a join on the event: one shard on a cluster),
    -- then their routes, which a cluster keeps by the token's hash.
    loop
        v_batch := array(
            select t.token_hash from app.pair_invite_tokens t
            join app.pair_invites i on i.event_id = t.event_id and i.id = t.invite_id
            where coalesce(i.accepted_at, i.declined_at, i.revoked_at,
                           case when i.status = 'sent' then i.expires_at end) < v_cutoff
            limit 5000);
        exit when pg_catalog.cardinality(v_batch) = 0;
        delete from app.pair_invite_tokens t where t.token_hash = any(v_batch);
        get diagnostics v_count = row_count;
        v_tokens := v_tokens + v_count;
        delete from app.pair_token_routes r where r.token_hash = any(v_batch);
        get diagnostics v_count = row_count;
        v_routes := v_routes + v_count;
    end loop;
    if v_tokens > 0 then
        return next pg_catalog.format(
            'deleted %s tokens of closed invites of app.pair_invite_tokens (%s routes)',
            v_tokens, v_routes);
    end if;
    return query select * from private.prune_older_rows(
        'app.mail_stop_tokens', 'created_at', v_cutoff, 'stop tokens');
end;
$$;
