-- Webhooks: the deliveries, as service_role reads and replays them, and as the
-- workers lease, send and record them (the events are written in
-- 85_webhooks.sql).

/**
 * An endpoint's deliveries, newest first, each with its log of attempts
 * (status code, latency, response excerpt or error) (service_role only).
 * `status` filters ('pending', 'delivered', 'failed'); pages of `max_rows`
 * (1..200) continue with `before` = the previous page's next_before. Returns
 * {endpoint, items, next_before}; 404 if the endpoint is unknown.
 */
create function api.webhook_deliveries(
    endpoint_id uuid, status text default null, before uuid default null,
    max_rows integer default 50
) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_endpoint app.webhook_endpoints;
    v_limit integer := least(greatest(coalesce(webhook_deliveries.max_rows, 50), 1), 200);
    v_after record;
    v_items jsonb;
begin
    select * into v_endpoint from app.webhook_endpoints e where e.id = webhook_deliveries.endpoint_id;
    if not found then
        raise exception using errcode = 'PT404', message = 'Webhook endpoint not found.';
    end if;
    if webhook_deliveries.status is not null
       and webhook_deliveries.status not in ('pending', 'delivered', 'failed') then
        raise exception using errcode = 'PT400',
            message = 'status must be pending, delivered or failed.';
    end if;
    select d.created_at, d.id into v_after from app.webhook_deliveries d
    where d.id = webhook_deliveries.before and d.endpoint_id = v_endpoint.id;
    select pg_catalog.jsonb_agg(x.item order by x.created_at desc, x.id desc) into v_items
    from (
        select d.created_at, d.id, pg_catalog.jsonb_build_object(
            'id', d.id, 'event_id', d.event_id, 'type', ev.type, 'status', d.status,
            'attempts', d.attempts, 'next_attempt_at',
            case when d.status = 'pending' then d.next_attempt_at end,
            'delivered_at', d.delivered_at, 'failed_at', d.failed_at, 'created_at', d.created_at,
            'log', (select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'attempt', a.attempt, 'status_code', a.status_code,
                        'latency_ms', a.latency_ms, 'response_excerpt', a.response_excerpt,
                        'error', a.error, 'at', a.created_at) order by a.id), '[]'::jsonb)
                    from app.webhook_attempts a where a.delivery_id = d.id)) as item
        from app.webhook_deliveries d
        join app.webhook_events ev on ev.id = d.event_id
        where d.endpoint_id = v_endpoint.id
          and (webhook_deliveries.status is null or d.status = webhook_deliveries.status)
          and (v_after is null or (d.created_at, d.id) < (v_after.created_at, v_after.id))
        order by d.created_at desc, d.id desc
        limit v_limit + 1) x;
    v_items := coalesce(v_items, '[]'::jsonb);
    -- One row more than asked for says whether another page follows.
    return pg_catalog.jsonb_build_object(
        'endpoint', private.webhook_endpoint_json(v_endpoint),
        'items', case when pg_catalog.jsonb_array_length(v_items) > v_limit
                      then v_items - v_limit else v_items end,
        'next_before', case when pg_catalog.jsonb_array_length(v_items) > v_limit
                            then v_items -> (v_limit - 1) -> 'id' end);
end;
$$;
grant execute on function api.webhook_deliveries(uuid, text, uuid, integer) to service_role;

/**
 * Sends an event again (service_role only) to every enabled endpoint that
 * subscribes to its type: deliveries start over (pending now, attempts 0),
 * with the same webhook-id, so receivers that deduplicate still can. Returns
 * {event_id, deliveries}; 404 if the event is unknown.
 */
create function api.replay_webhook(event_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_event app.webhook_events;
    v_count integer;
begin
    select * into v_event from app.webhook_events ev where ev.id = replay_webhook.event_id;
    if not found then
        raise exception using errcode = 'PT404', message = 'Webhook event not found.';
    end if;
    insert into app.webhook_deliveries as d (event_id, endpoint_id)
    select v_event.id, e.id from app.webhook_endpoints e
    where e.enabled and e.event_types @> array[v_event.type]
    on conflict on constraint webhook_deliveries_event_endpoint_key do update
    set status = 'pending', attempts = 0, next_attempt_at = pg_catalog.now(), locked_until = null,
        lease = null, delivered_at = null, failed_at = null, updated_at = pg_catalog.now();
    get diagnostics v_count = row_count;
    perform private.audit('webhook_event.replay', 'replayed', 200, v_event.id,
        pg_catalog.jsonb_build_object('deliveries', v_count));
    perform pg_catalog.pg_notify('joinery_webhooks', '');
    return pg_catalog.jsonb_build_object('event_id', v_event.id, 'deliveries', v_count);
end;
$$;
grant execute on function api.replay_webhook(uuid) to service_role;

-- The worker's side. Workers connect as the gateway's role and switch to
-- service_role; these functions are not in the api schema, so no HTTP call
-- reaches them.

/**
 * Leases up to max_rows due deliveries of enabled endpoints for lease_seconds
 * (FOR UPDATE SKIP LOCKED: two workers never take the same row). The caller
 * commits, sends, then calls private.webhook_done with the lease; a worker that
 * dies leaves the row due again when its lease runs out. Returns what to send:
 * the body (exact bytes to sign), the URL and the signing keys (the current
 * one, and the previous one for 24 h after a rotation).
 */
create function private.webhook_claim(lease_seconds integer, max_rows integer default 1)
returns table (delivery_id uuid, lease uuid, event_id uuid, endpoint_id uuid, url text,
               body text, keys bytea[], attempt integer)
language plpgsql volatile security definer
set search_path = ''
as $$
begin
    return query
    with due as (
        select d.id from app.webhook_deliveries d
        join app.webhook_endpoints e on e.id = d.endpoint_id
        where d.status = 'pending' and d.next_attempt_at <= pg_catalog.now() and e.enabled
        order by d.next_attempt_at
        limit greatest(webhook_claim.max_rows, 1)
        for update of d skip locked
    ), leased as (
        update app.webhook_deliveries d
        set lease = pg_catalog.gen_random_uuid(),
            locked_until = pg_catalog.now() + pg_catalog.make_interval(secs => webhook_claim.lease_seconds),
            next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => webhook_claim.lease_seconds),
            updated_at = pg_catalog.now()
        from due where d.id = due.id
        returning d.id, d.lease, d.event_id, d.endpoint_id, d.attempts
    )
    select l.id, l.lease, l.event_id, l.endpoint_id, e.url,
           pg_catalog.jsonb_build_object(
               'type', ev.type,
               'timestamp', pg_catalog.to_char(ev.created_at at time zone 'UTC',
                                               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'data', case when e.include_emails
                            then ev.data || coalesce(ev.emails, '{}'::jsonb)
                                 || private.webhook_user_emails(ev.data)
                            else ev.data end)::text,
           case when e.previous_secret is not null and e.previous_secret_until > pg_catalog.now()
                then array[e.secret, e.previous_secret] else array[e.secret] end,
           l.attempts + 1
    from leased l
    join app.webhook_events ev on ev.id = l.event_id
    join app.webhook_endpoints e on e.id = l.endpoint_id;
end;
$$;
grant execute on function private.webhook_claim(integer, integer) to service_role;

/**
 * Records one attempt of a leased delivery: a log row always; then, if the
 * lease is still the row's, the outcome. A 2xx answer delivers it and clears
 * the endpoint's failure state. Anything else schedules the next attempt after
 * private.webhook_retry_schedule() (times retry_scale, which tests shrink), or
 * fails the delivery after the last; an endpoint failing for longer than
 * disable_after_seconds is disabled, with an audit row. Returns 'delivered',
 * 'retry', 'failed', or 'stale' (the lease was lost: someone else owns the row).
 */
create function private.webhook_done(
    delivery_id uuid, lease uuid, status_code integer, latency_ms integer,
    response_excerpt text, error text, retry_scale double precision default 1,
    disable_after_seconds double precision default 432000
) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_delivery app.webhook_deliveries;
    v_endpoint app.webhook_endpoints;
    v_schedule integer[] := private.webhook_retry_schedule();
    v_attempt integer;
begin
    -- The endpoint first (as delete_webhook_endpoint locks it before its
    -- deliveries go), so the two wait for each other instead of deadlocking.
    perform from app.webhook_endpoints e
    where e.id = (select d.endpoint_id from app.webhook_deliveries d
                  where d.id = webhook_done.delivery_id)
    for key share;
    select * into v_delivery from app.webhook_deliveries d
    where d.id = webhook_done.delivery_id for update;
    if not found then
        return 'stale';  -- the endpoint was deleted meanwhile
    end if;
    v_attempt := v_delivery.attempts + 1;
    insert into app.webhook_attempts (delivery_id, endpoint_id, event_id, attempt, status_code,
                                      latency_ms, response_excerpt, error)
    values (v_delivery.id, v_delivery.endpoint_id, v_delivery.event_id, v_attempt,
            webhook_done.status_code, webhook_done.latency_ms,
            pg_catalog.left(webhook_done.response_excerpt, 1024), pg_catalog.left(webhook_done.error, 500));
    if v_delivery.lease is distinct from webhook_done.lease or v_delivery.status <> 'pending' then
        return 'stale';
    end if;

    if webhook_done.status_code between 200 and 299 then
        update app.webhook_deliveries d
        set status = 'delivered', attempts = v_attempt, delivered_at = pg_catalog.now(),
            locked_until = null, lease = null, updated_at = pg_catalog.now()
        where d.id = v_delivery.id;
        update app.webhook_endpoints e set failing_since = null
        where e.id = v_delivery.endpoint_id and e.failing_since is not null;
        return 'delivered';
    end if;

    update app.webhook_deliveries d
    set attempts = v_attempt, locked_until = null, lease = null, updated_at = pg_catalog.now(),
        status = case when v_attempt > pg_catalog.cardinality(v_schedule) then 'failed'
                      else 'pending' end,
        failed_at = case when v_attempt > pg_catalog.cardinality(v_schedule)
                         then pg_catalog.now() end,
        next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(
            secs => coalesce(v_schedule[v_attempt], 0) * greatest(webhook_done.retry_scale, 0))
    where d.id = v_delivery.id
    returning * into v_delivery;

    update app.webhook_endpoints e set failing_since = coalesce(e.failing_since, pg_catalog.now())
    where e.id = v_delivery.endpoint_id
    returning * into v_endpoint;
    if v_endpoint.enabled and v_endpoint.failing_since
            <= pg_catalog.now() - pg_catalog.make_interval(secs => webhook_done.disable_after_seconds) then
        update app.webhook_endpoints e
        set enabled = false, disabled_at = pg_catalog.now(), updated_at = pg_catalog.now(),
            disabled_reason = pg_catalog.format('failing since %s', v_endpoint.failing_since)
        where e.id = v_endpoint.id;
        perform private.audit('webhook_endpoint.disable', 'failing', coalesce(webhook_done.status_code, 0),
            v_endpoint.id, pg_catalog.jsonb_build_object(
                'failing_since', v_endpoint.failing_since,
                'disable_after_seconds', webhook_done.disable_after_seconds));
    end if;
    return v_delivery.status;
end;
$$;
grant execute on function private.webhook_done(uuid, uuid, integer, integer, text, text,
    double precision, double precision) to service_role;

/**
 * Deliveries waiting to be sent to enabled endpoints (for metrics).
 */
create function private.webhook_pending_count() returns bigint
language plpgsql stable security definer
set search_path = ''
as $$
begin
    return (select pg_catalog.count(*) from app.webhook_deliveries d
            join app.webhook_endpoints e on e.id = d.endpoint_id
            where d.status = 'pending' and e.enabled);
end;
$$;
grant execute on function private.webhook_pending_count() to service_role;

/**
 * Deliveries given up on after the last retry (for metrics).
 */
create function private.webhook_failed_count() returns bigint
language plpgsql stable security definer
set search_path = ''
as $$
begin
    return (select pg_catalog.count(*) from app.webhook_deliveries d where d.status = 'failed');
end;
$$;
grant execute on function private.webhook_failed_count() to service_role;

/**
 * Deletes events older than `older_than` with nothing left to send (no
 * pending delivery), with their deliveries and log; returns how many. Workers
 * call it now and then (WEBHOOK_RETENTION).
 */
create function private.webhook_prune(older_than interval) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_count bigint;
begin
    delete from app.webhook_events ev
    where ev.created_at < pg_catalog.now() - webhook_prune.older_than
      and not exists (select from app.webhook_deliveries d
                      where d.event_id = ev.id and d.status = 'pending');
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;
grant execute on function private.webhook_prune(interval) to service_role;
