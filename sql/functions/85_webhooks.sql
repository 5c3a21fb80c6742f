-- Webhooks, following the Standard Webhooks specification (standardwebhooks.com).
--
-- service_role manages endpoints through the api functions of
-- 86_webhook_endpoints.sql. Changes write events with private.webhook_event
-- (below) in their own transaction: an event exists only if the change
-- commits. Each event is fanned out at write time to one delivery per enabled
-- endpoint subscribed to its type. Workers (python -m gateway webhooks, or the
-- gateway with WEBHOOK_WORKER=on) lease due deliveries (private.webhook_claim:
-- FOR UPDATE SKIP LOCKED, then a lease with locked_until, committed before the
-- HTTP request), send them, and record the outcome (private.webhook_done) with
-- the specification's retry schedule: those are in 87_webhook_deliveries.sql.

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
