-- Events and their authors. The creator is the first author and the only one
-- who adds or removes authors.

/**
 * True when user_id is a current author of the event.
 */
create function private.is_event_author(event_id uuid, user_id uuid) returns boolean
language plpgsql stable
set search_path = ''
as $$
begin
    -- plpgsql, not SQL: Citus plans no distributed query inside a SQL function
    -- that takes parameters.
    return exists (
        select from app.event_authors a
        where a.event_id = is_event_author.event_id and a.user_id = is_event_author.user_id);
end;
$$;

/**
 * The public shape of an event: {id, title, creator_id, starts_at,
 * registration_deadline, capacity, status, author_ids, created_at}.
 */
create function private.event_json(e app.events) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
    return pg_catalog.jsonb_build_object(
        'id', e.id, 'title', e.title, 'creator_id', e.creator_id, 'starts_at', e.starts_at,
        'registration_deadline', e.registration_deadline, 'capacity', e.capacity,
        'status', e.status,
        'author_ids', (select coalesce(pg_catalog.jsonb_agg(a.user_id order by a.created_at, a.user_id), '[]')
                       from app.event_authors a where a.event_id = e.id),
        'created_at', e.created_at);
end;
$$;

/**
 * Creates an event; the caller is its creator and first author. The title:
 * 1 to 200 characters, no control characters (400). capacity (seats) must be
 * positive; registration_deadline is optional.
 * @arg title minLength=1 maxLength=200 pattern=^[^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]*[^\x20\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069][^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$
 * @arg capacity minimum=1
 * @returns {id:uuid, title:string, creator_id:uuid, starts_at:string?, registration_deadline:string?, capacity:integer?, status:open|closed|cancelled, author_ids:[uuid], created_at:date-time}
 * @link get_event event_id=id
 * @link like_event event_id=id
 * @link create_pair_invite event_id=id
 * @link register_for_event event_id=id
 * @link add_event_author event_id=id
 * @link event_like_groups event_id=id
 */
create function api.create_event(
    title text, starts_at timestamptz default null,
    registration_deadline timestamptz default null, capacity integer default null
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_title text := private.plain_name(create_event.title, 'title', 200);
    v_event app.events;
begin
    if create_event.capacity is not null and create_event.capacity < 1 then
        raise exception using errcode = '22023', message = 'capacity must be at least 1.';
    end if;
    insert into app.events (creator_id, title, starts_at, registration_deadline, capacity)
    values (v_uid, v_title, create_event.starts_at, create_event.registration_deadline,
            create_event.capacity)
    returning * into v_event;
    insert into app.event_authors (event_id, user_id) values (v_event.id, v_uid);
    return private.event_json(v_event);
end;
$$;
grant execute on function api.create_event(text, timestamptz, timestamptz, integer)
    to authenticated, service_role;

/**
 * An event, for any signed-in user (events are what people apply to). 404 if none.
 * @returns {id:uuid, title:string, creator_id:uuid, starts_at:string?, registration_deadline:string?, capacity:integer?, status:open|closed|cancelled, author_ids:[uuid], created_at:date-time}
 */
create function api.get_event(event_id uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_event app.events;
begin
    perform private.require_user();
    select * into v_event from app.events e where e.id = get_event.event_id;
    if not found then
        raise exception using errcode = 'PT404', message = 'Event not found.';
    end if;
    return private.event_json(v_event);
end;
$$;
grant execute on function api.get_event(uuid) to authenticated, service_role;

/**
 * The lock that keeps authors and pending like-group members of one event
 * apart: taken exclusively by author changes, shared by like_event and
 * add_like_group_member. A transaction-scoped advisory lock rather than the
 * event's row: a row lock strong enough to stop likes (FOR UPDATE against
 * their KEY SHARE) would also stop every foreign-key insert into the event's
 * registrations, pair invites and like groups while an author change
 * re-evaluates every pending group. On a Citus cluster the functions run on
 * the coordinator, which holds these locks (as the rate limiter's).
 */
create function private.lock_event_authors(event_id uuid, exclusive boolean) returns void
language plpgsql volatile
set search_path = ''
as $$
declare
    v_key bigint := pg_catalog.hashtextextended('event_authors/' || lock_event_authors.event_id::text, 0);
begin
    if lock_event_authors.exclusive then
        perform pg_catalog.pg_advisory_xact_lock(v_key);
    else
        perform pg_catalog.pg_advisory_xact_lock_shared(v_key);
    end if;
end;
$$;

/**
 * Returns the event when the caller is its creator, holding the event's
 * authors lock (private.lock_event_authors) exclusively: 404 when there is no
 * such event, 403 when the caller did not create it. Checked before locking,
 * so nobody else can make the event's likes wait. No row lock on the event.
 */
create function private.lock_event_as_creator(event_id uuid) returns app.events
language plpgsql volatile
set search_path = ''
as $$
declare
    v_event app.events;
begin
    select * into v_event from app.events e where e.id = lock_event_as_creator.event_id;
    if not found then
        raise exception using errcode = 'PT404', message = 'Event not found.';
    end if;
    if v_event.creator_id <> private.require_user() then
        raise exception using errcode = '42501', message = 'Only the event''s creator can change its authors.';
    end if;
    perform private.lock_event_authors(v_event.id, true);
    return v_event;
end;
$$;

/**
 * Re-evaluates every pending like group of a locked event after its authors
 * changed (private.evaluate_like_group approves those that reach the threshold).
 */
create function private.evaluate_event_groups(event_id uuid) returns void
language plpgsql volatile
set search_path = ''
as $$
declare
    v_group uuid;
begin
    for v_group in
        select g.id from app.like_groups g
        where g.event_id = evaluate_event_groups.event_id and g.status = 'pending'
        order by g.id
    loop
        perform private.evaluate_like_group(v_group);
    end loop;
end;
$$;

/**
 * Adds an author to the event (creator only). Adding an author again changes
 * nothing. Authors cannot be in like groups of their event: a member of a
 * pending like group of the event is refused (409). Returns the event. An
 * author removed and added back finds their earlier approvals counting again,
 * so pending groups are re-evaluated. The event's authors lock orders this
 * with like_event and add_like_group_member, which share it.
 * @returns {id:uuid, title:string, creator_id:uuid, starts_at:string?, registration_deadline:string?, capacity:integer?, status:open|closed|cancelled, author_ids:[uuid], created_at:date-time}
 */
create function api.add_event_author(event_id uuid, user_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_event app.events := private.lock_event_as_creator(add_event_author.event_id);
    -- Every group the new author's approvals complete: one NOTIFY in all.
    v_batch boolean := private.publish_batch_begin();
begin
    if add_event_author.user_id is null
       or not exists (select from auth.users u where u.id = add_event_author.user_id) then
        raise exception using errcode = 'PT404', message = 'User not found.';
    end if;
    if exists (select from app.like_group_members m
               where m.event_id = v_event.id and m.user_id = add_event_author.user_id and m.pending)
       and not private.is_event_author(v_event.id, add_event_author.user_id) then
        raise exception using errcode = 'PT409',
            message = 'A member of a pending like group of the event cannot be one of its authors.';
    end if;
    insert into app.event_authors (event_id, user_id)
    values (v_event.id, add_event_author.user_id)
    on conflict do nothing;
    if found then
        perform private.evaluate_event_groups(v_event.id);
    end if;
    perform private.publish_batch_end(v_batch);
    return private.event_json(v_event);
end;
$$;
grant execute on function api.add_event_author(uuid, uuid) to authenticated, service_role;

/**
 * Removes an author (creator only; the creator stays an author). Only current
 * authors' approvals count, so every pending like group of the event is
 * re-evaluated in this transaction and may be approved by it.
 * @returns {id:uuid, title:string, creator_id:uuid, starts_at:string?, registration_deadline:string?, capacity:integer?, status:open|closed|cancelled, author_ids:[uuid], created_at:date-time}
 */
create function api.remove_event_author(event_id uuid, user_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_event app.events := private.lock_event_as_creator(remove_event_author.event_id);
    v_batch boolean := private.publish_batch_begin();
begin
    if remove_event_author.user_id = v_event.creator_id then
        raise exception using errcode = '22023', message = 'The event''s creator is always an author.';
    end if;
    delete from app.event_authors a
    where a.event_id = v_event.id and a.user_id = remove_event_author.user_id;
    if not found then
        raise exception using errcode = 'PT404', message = 'This user is not an author of the event.';
    end if;
    perform private.evaluate_event_groups(v_event.id);
    perform private.publish_batch_end(v_batch);
    return private.event_json(v_event);
end;
$$;
grant execute on function api.remove_event_author(uuid, uuid) to authenticated, service_role;
