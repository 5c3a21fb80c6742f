-- Webhooks: the endpoints, managed by service_role through the api functions
-- below (events are written in 85_webhooks.sql, delivered in
-- 87_webhook_deliveries.sql).

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
