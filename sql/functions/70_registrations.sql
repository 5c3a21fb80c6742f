-- Registrations and capacity (seed flow 3), and the short codes of invitations.
--
-- Seats are taken by one UPDATE of the event's seats_taken guarded by the
-- capacity (and a check constraint), so concurrent registrations can never
-- overbook: the row lock serialises them. Nobody holds two confirmed
-- registrations for one event: a partial unique index says so. Pair
-- invitations are in 71_pair_invites.sql, their answers in 72_pair_answers.sql.

/**
 * n random bytes from the server's strong random source (gen_random_uuid
 * reads it): 14 random bytes per UUID, skipping its version and variant bytes.
 */
create function private.random_bytes(n integer) returns bytea
language plpgsql volatile
set search_path = ''
as $$
declare
    v_out bytea := ''::bytea;
    v_uuid bytea;
begin
    while pg_catalog.length(v_out) < n loop
        v_uuid := pg_catalog.uuid_send(pg_catalog.gen_random_uuid());
        v_out := v_out || pg_catalog.substr(v_uuid, 1, 6)
                       || pg_catalog.substr(v_uuid, 8, 1)
                       || pg_catalog.substr(v_uuid, 10, 7);
    end loop;
    return pg_catalog.substr(v_out, 1, n);
end;
$$;

/**
 * A short code people can read aloud and type: 8 characters from 31 with no
 * look-alikes (no 0, O, 1, I, L), about 40 bits, without modulo bias.
 */
create function private.new_short_code() returns text
language plpgsql volatile
set search_path = ''
as $$
declare
    c_alphabet constant text := '23456789ABCDEFGHJKMNPQRSTUVWXYZ';
    v_code text := '';
    v_bytes bytea;
    v_byte integer;
begin
    while pg_catalog.length(v_code) < 8 loop
        v_bytes := private.random_bytes(16);
        for i in 0 .. 15 loop
            v_byte := pg_catalog.get_byte(v_bytes, i);
            if v_byte < 248 and pg_catalog.length(v_code) < 8 then  -- 248 = 8 * 31
                v_code := v_code || pg_catalog.substr(c_alphabet, v_byte % 31 + 1, 1);
            end if;
        end loop;
    end loop;
    return v_code;
end;
$$;

/**
 * A short code as typed by a person: case and spaces or dashes ignored.
 */
create function private.normalize_short_code(code text) returns text
language plpgsql immutable
set search_path = ''
as $$
begin
    return pg_catalog.upper(pg_catalog.regexp_replace(coalesce(code, ''), '[\s-]', '', 'g'));
end;
$$;

/**
 * Why an event takes no registrations now ('closed', 'deadline'), or null.
 */
create function private.registration_closed_reason(e app.events) returns text
language plpgsql stable
set search_path = ''
as $$
begin
    return case
        when e.status <> 'open' then 'closed'
        when e.registration_deadline is not null and e.registration_deadline <= pg_catalog.now()
            then 'deadline'
    end;
end;
$$;

/**
 * Takes `seats` seats of an event, or returns false when they are not free.
 */
create function private.take_seats(event_id uuid, seats integer) returns boolean
language plpgsql volatile
set search_path = ''
as $$
begin
    update app.events e set seats_taken = e.seats_taken + take_seats.seats
    where e.id = take_seats.event_id
      and (e.capacity is null or e.seats_taken + take_seats.seats <= e.capacity);
    return found;
end;
$$;

/**
 * {id, event_id, user_id, status, pair_id, created_at}
 */
create function private.registration_json(r app.registrations) returns jsonb
language plpgsql immutable
set search_path = ''
as $$
begin
    return pg_catalog.jsonb_build_object(
        'id', r.id, 'event_id', r.event_id, 'user_id', r.user_id, 'status', r.status,
        'pair_id', r.pair_id, 'created_at', r.created_at);
end;
$$;

/**
 * Registers the caller alone: event open and before its deadline (400), a
 * seat free (409). Registering again returns the existing registration.
 * @returns {id:uuid, event_id:uuid, user_id:uuid, status:confirmed|cancelled, pair_id:uuid?, created_at:date-time}
 */
create function api.register_for_event(event_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_event app.events;
    v_reason text;
    v_reg app.registrations;
begin
    select * into v_event from app.events e where e.id = register_for_event.event_id;
    if not found then
        raise exception using errcode = 'PT404', message = 'Event not found.';
    end if;
    select * into v_reg from app.registrations r
    where r.event_id = v_event.id and r.user_id = v_uid and r.status = 'confirmed';
    if found then
        return private.registration_json(v_reg);
    end if;
    v_reason := private.registration_closed_reason(v_event);
    if v_reason is not null then
        raise exception using errcode = 'PT400', message = 'Registration for this event is closed.',
            detail = v_reason;
    end if;
    if not private.take_seats(v_event.id, 1) then
        raise exception using errcode = 'PT409', message = 'The event is full.';
    end if;
    -- A conflict is skipped, not caught (no subtransaction per registration): a
    -- concurrent registration of the caller won; raising undoes the seat too.
    insert into app.registrations (event_id, user_id) values (v_event.id, v_uid)
    on conflict do nothing
    returning * into v_reg;
    if not found then
        raise exception using errcode = 'PT409', message = 'You are already registered for this event.';
    end if;
    perform private.webhook_event('registration.confirmed', pg_catalog.jsonb_build_object('registration_id', v_reg.id, 'event_id', v_reg.event_id, 'user_id', v_reg.user_id));
    return private.registration_json(v_reg);
end;
$$;
grant execute on function api.register_for_event(uuid) to authenticated, service_role;

/**
 * Cancels the caller's registration and frees its seat. A partner registered
 * with the caller stays registered. 404 when the caller is not registered.
 */
create function api.cancel_registration(event_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_reg record;
begin
    update app.registrations r set status = 'cancelled', cancelled_at = pg_catalog.now()
    where r.event_id = cancel_registration.event_id and r.user_id = v_uid and r.status = 'confirmed';
    if not found then
        raise exception using errcode = 'PT404', message = 'You are not registered for this event.';
    end if;
    update app.events e set seats_taken = e.seats_taken - 1 where e.id = cancel_registration.event_id;
    -- The rows first (a query naming the event as a value), then the event for
    -- each, from here: on a Citus cluster a function called inside a query
    -- would run on the worker, away from the coordinator's webhook outbox.
    for v_reg in
        select r.id, r.event_id, r.user_id, r.pair_id from app.registrations r
        where r.event_id = cancel_registration.event_id and r.user_id = v_uid
          and r.status = 'cancelled'
        order by r.cancelled_at desc limit 1
    loop
        perform private.webhook_event('registration.cancelled', pg_catalog.jsonb_build_object('registration_id', v_reg.id, 'event_id', v_reg.event_id, 'user_id', v_reg.user_id, 'pair_id', v_reg.pair_id));
    end loop;
end;
$$;
grant execute on function api.cancel_registration(uuid) to authenticated, service_role;
