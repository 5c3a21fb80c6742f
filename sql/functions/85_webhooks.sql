-- Webhooks, following the Standard Webhooks specification (standardwebhooks.com).
--
-- service_role manages endpoints through the api functions below. Changes write
-- events with private.webhook_event in their own transaction: an event exists
-- only if the change commits. Each event is fanned out at write time to one
-- delivery per enabled endpoint subscribed to its type. Workers (python -m
-- gateway webhooks, or the gateway with WEBHOOK_WORKER=on) lease due deliveries
-- (private.webhook_claim: FOR UPDATE SKIP LOCKED, then a lease with
-- locked_until, committed before the HTTP request), send them, and record the
-- outcome (private.webhook_done) with the specification's retry schedule.

/**
 * The event types an endpoint can subscribe to.
 */
create function private.webhook_event_types() returns text[]
language plpgsql immutable
set search_path = ''
as $$
begin
    return array[
        'group.member_joined', 'group_invite.revoked',
        'like_group.created', 'like_group.approved', 'like_group.rejected',
        'pair_invite.sent', 'pair_invite.accepted', 'pair_invite.declined',
        'pair_invite.revoked',
        'registration.confirmed', 'registration.cancelled'];
end;
$$;

/**
 * Seconds to wait after the nth failed attempt (n = 1..7): the specification's
 * schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h). After the 8th attempt
 * fails the delivery is failed.
 */
create function private.webhook_retry_schedule() returns integer[]
language plpgsql immutable
set search_path = ''
as $$
begin
    return array[5, 300, 1800, 7200, 18000, 36000, 36000];
end;
$$;

/**
 * Records an event in the outbox, in the caller's transaction, with one
 * delivery per enabled endpoint subscribed to `type`. `data` holds ids only;
 * `emails` holds addresses, sent only to endpoints that opted in
 * (include_emails). Nothing is written when no endpoint listens.
 */
create function private.webhook_event(type text, data jsonb, emails jsonb default null)
returns void
language plpgsql volatile
set search_path = ''
as $$
declare
    v_event uuid;
begin
    if not exists (select from app.webhook_endpoints e
                   where e.enabled and e.event_types @> array[webhook_event.type]) then
        return;
    end if;
    insert into app.webhook_events (type, data, emails)
    values (webhook_event.type, pg_catalog.jsonb_strip_nulls(webhook_event.data),
            pg_catalog.jsonb_strip_nulls(webhook_event.emails))
    returning id into v_event;
    insert into app.webhook_deliveries (event_id, endpoint_id)
    select v_event, e.id from app.webhook_endpoints e
    where e.enabled and e.event_types @> array[webhook_event.type];
    -- Delivered at commit only: a rolled-back change wakes nobody.
    perform pg_catalog.pg_notify('joinery_webhooks', '');
end;
$$;

/**
 * The addresses of the accounts an event's data names (user_id -> user_email,
 * inviter_id -> inviter_email, ...), for endpoints with include_emails.
 */
create function private.webhook_user_emails(data jsonb) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
    return (
        select coalesce(pg_catalog.jsonb_object_agg(
                   pg_catalog.replace(k.key, '_id', '_email'), u.email), '{}'::jsonb)
        from pg_catalog.jsonb_each_text(data) k
        join auth.users u on u.id::text = k.value
        where k.key in ('user_id', 'inviter_id', 'invitee_id', 'creator_id'));
end;
$$;

/**
 * Refuses (400) an event type list that is empty or names an unknown type.
 */
create function private.webhook_check_types(event_types text[]) returns void
language plpgsql immutable
set search_path = ''
as $$
declare
    v_bad text;
begin
    if event_types is null or pg_catalog.cardinality(event_types) = 0 then
        raise exception using errcode = 'PT400', message = 'event_types must name at least one type.';
    end if;
    select t into v_bad from pg_catalog.unnest(event_types) t
    where t is null or t <> all (private.webhook_event_types()) limit 1;
    if found then
        raise exception using errcode = 'PT400',
            message = pg_catalog.format('Unknown event type %L.', v_bad),
            hint = 'Known types: ' || pg_catalog.array_to_string(private.webhook_event_types(), ', ');
    end if;
end;
$$;

/**
 * Refuses (400) a URL that is not http(s)://host[:port][/path], with no
 * credentials, at most 2048 characters. Where it may point is checked at
 * delivery, after DNS resolution (the worker's SSRF rules).
 */
create function private.webhook_check_url(url text) returns void
language plpgsql immutable
set search_path = ''
as $$
begin
    if url is null or pg_catalog.length(url) > 2048
       or url !~ '^https?://[^\s/?#@]+(/[^\s]*)?$' then
        raise exception using errcode = 'PT400',
            message = 'url must be an http:// or https:// URL without credentials.';
    end if;
end;
$$;

/**
 * An endpoint as the api shows it: never its secret.
 */
create function private.webhook_endpoint_json(e app.webhook_endpoints) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
    return pg_catalog.jsonb_build_object(
        'id', e.id, 'url', e.url, 'event_types', pg_catalog.to_jsonb(e.event_types),
        'description', e.description, 'enabled', e.enabled,
        'include_emails', e.include_emails, 'failing_since', e.failing_since,
        'disabled_at', e.disabled_at, 'disabled_reason', e.disabled_reason,
        'previous_secret_until', case when e.previous_secret_until > pg_catalog.now()
                                      then e.previous_secret_until end,
        'created_at', e.created_at, 'updated_at', e.updated_at);
end;
$$;

/**
 * The secret as shown once: 'whsec_' and the base64 of its 32 bytes.
 */
create function private.webhook_secret_text(secret bytea) returns text
language plpgsql immutable
set search_path = ''
as $$
begin
    return 'whsec_' || pg_catalog.encode(secret, 'base64');
end;
$$;

/**
 * The endpoint, locked for this transaction; 404 when there is none.
 */
create function private.lock_webhook_endpoint(endpoint_id uuid) returns app.webhook_endpoints
language plpgsql volatile
set search_path = ''
as $$
declare
    v_endpoint app.webhook_endpoints;
begin
    select * into v_endpoint from app.webhook_endpoints e
    where e.id = lock_webhook_endpoint.endpoint_id for update;
    if not found then
        raise exception using errcode = 'PT404', message = 'Webhook endpoint not found.';
    end if;
    return v_endpoint;
end;
$$;

/**
 * Creates a webhook endpoint (service_role only): the events of `event_types`
 * are POSTed to `url`, signed with a new secret. Returns {id, url,
 * event_types, description, enabled, include_emails, secret, created_at, ...};
 * the secret ('whsec_...') is shown here only. `include_emails` adds the
 * addresses of the people an event names to its data (off by default: ids only).
 */
create function api.create_webhook_endpoint(
    url text, event_types text[], description text default null,
    include_emails boolean default false
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_endpoint app.webhook_endpoints;
begin
    perform private.webhook_check_url(create_webhook_endpoint.url);
    perform private.webhook_check_types(create_webhook_endpoint.event_types);
    if pg_catalog.length(create_webhook_endpoint.description) > 500 then
        raise exception using errcode = 'PT400', message = 'description is longer than 500 characters.';
    end if;
    insert into app.webhook_endpoints (url, event_types, description, include_emails, secret)
    values (create_webhook_endpoint.url,
            (select pg_catalog.array_agg(distinct t order by t)
             from pg_catalog.unnest(create_webhook_endpoint.event_types) t),
            nullif(create_webhook_endpoint.description, ''),
            coalesce(create_webhook_endpoint.include_emails, false),
            private.random_bytes(32))
    returning * into v_endpoint;
    perform private.audit('webhook_endpoint.create', 'created', 200, v_endpoint.id);
    return private.webhook_endpoint_json(v_endpoint)
        || pg_catalog.jsonb_build_object('secret', private.webhook_secret_text(v_endpoint.secret));
end;
$$;
grant execute on function api.create_webhook_endpoint(text, text[], text, boolean) to service_role;

/**
 * Changes an endpoint (service_role only); a null argument leaves its field as
 * it is, an empty description clears it. Enabling an endpoint clears its
 * failure state. Returns the endpoint (without its secret); 404 if unknown.
 */
create function api.update_webhook_endpoint(
    endpoint_id uuid, url text default null, event_types text[] default null,
    description text default null, enabled boolean default null,
    include_emails boolean default null
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_endpoint app.webhook_endpoints :=
        private.lock_webhook_endpoint(update_webhook_endpoint.endpoint_id);
begin
    if update_webhook_endpoint.url is not null then
        perform private.webhook_check_url(update_webhook_endpoint.url);
    end if;
    if update_webhook_endpoint.event_types is not null then
        perform private.webhook_check_types(update_webhook_endpoint.event_types);
    end if;
    if pg_catalog.length(update_webhook_endpoint.description) > 500 then
        raise exception using errcode = 'PT400', message = 'description is longer than 500 characters.';
    end if;
    update app.webhook_endpoints e set
        url = coalesce(update_webhook_endpoint.url, e.url),
        event_types = coalesce((select pg_catalog.array_agg(distinct t order by t)
                                from pg_catalog.unnest(update_webhook_endpoint.event_types) t),
                               e.event_types),
        description = case when update_webhook_endpoint.description is null then e.description
                           else nullif(update_webhook_endpoint.description, '') end,
        include_emails = coalesce(update_webhook_endpoint.include_emails, e.include_emails),
        enabled = coalesce(update_webhook_endpoint.enabled, e.enabled),
        failing_since = case when update_webhook_endpoint.enabled then null else e.failing_since end,
        disabled_at = case when update_webhook_endpoint.enabled then null
                           when update_webhook_endpoint.enabled = false
                           then coalesce(e.disabled_at, pg_catalog.now())
                           else e.disabled_at end,
        disabled_reason = case when update_webhook_endpoint.enabled then null
                               when update_webhook_endpoint.enabled = false
                               then coalesce(e.disabled_reason, 'disabled by an operator')
                               else e.disabled_reason end,
        updated_at = pg_catalog.now()
    where e.id = v_endpoint.id
    returning * into v_endpoint;
    perform private.audit('webhook_endpoint.update', 'updated', 200, v_endpoint.id);
    return private.webhook_endpoint_json(v_endpoint);
end;
$$;
grant execute on function api.update_webhook_endpoint(uuid, text, text[], text, boolean, boolean)
    to service_role;

/**
 * Deletes an endpoint with its deliveries and their log (service_role only).
 * Returns {id, deleted: true}; 404 if unknown.
 */
create function api.delete_webhook_endpoint(endpoint_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_endpoint app.webhook_endpoints :=
        private.lock_webhook_endpoint(delete_webhook_endpoint.endpoint_id);
begin
    delete from app.webhook_endpoints e where e.id = v_endpoint.id;
    perform private.audit('webhook_endpoint.delete', 'deleted', 200, v_endpoint.id);
    return pg_catalog.jsonb_build_object('id', v_endpoint.id, 'deleted', true);
end;
$$;
grant execute on function api.delete_webhook_endpoint(uuid) to service_role;

/**
 * Gives an endpoint a new secret (service_role only), shown here only. For
 * 24 hours the previous secret keeps signing beside it: each message carries
 * two signatures, so receivers can switch without losing one. Returns {id,
 * secret, previous_secret_until}; 404 if unknown.
 */
create function api.rotate_webhook_secret(endpoint_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_endpoint app.webhook_endpoints :=
        private.lock_webhook_endpoint(rotate_webhook_secret.endpoint_id);
begin
    update app.webhook_endpoints e
    set previous_secret = e.secret, previous_secret_until = pg_catalog.now() + interval '24 hours',
        secret = private.random_bytes(32), updated_at = pg_catalog.now()
    where e.id = v_endpoint.id
    returning * into v_endpoint;
    perform private.audit('webhook_endpoint.rotate', 'rotated', 200, v_endpoint.id);
    return pg_catalog.jsonb_build_object(
        'id', v_endpoint.id, 'secret', private.webhook_secret_text(v_endpoint.secret),
        'previous_secret_until', v_endpoint.previous_secret_until);
end;
$$;
grant execute on function api.rotate_webhook_secret(uuid) to service_role;

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
