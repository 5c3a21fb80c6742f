-- Friendships: a request, accepted by the other person (or by asking back).

/**
 * True when a and b are friends (an accepted friendship).
 */
create function private.are_friends(a uuid, b uuid) returns boolean
language plpgsql stable
set search_path = ''
as $$
begin
    return exists (
        select from app.friendships f
        where f.user_low = least(a, b) and f.user_high = greatest(a, b) and f.status = 'accepted');
end;
$$;

/**
 * Raises 400 when the other person is the caller and 404 when they have no account.
 */
create function private.require_other_user(caller uuid, other uuid) returns void
language plpgsql stable
set search_path = ''
as $$
begin
    if other is null then
        raise exception using errcode = '22023', message = 'user_id is required.';
    end if;
    if other = caller then
        raise exception using errcode = '22023', message = 'You cannot do this with yourself.';
    end if;
    if not exists (select from auth.users u where u.id = other) then
        raise exception using errcode = 'PT404', message = 'User not found.';
    end if;
end;
$$;

/**
 * Asks user_id to be friends. A request to someone who already asked you
 * makes you friends. Returns {user_id, status} with status 'pending' or 'accepted'.
 * @returns {user_id:uuid, status:pending|accepted}
 * @link accept_friend user_id=user_id
 * @link remove_friend user_id=user_id
 */
create function api.request_friend(user_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    -- A value, not now() in DO UPDATE: Citus takes only immutable functions there.
    v_now timestamptz := pg_catalog.now();
    v_row app.friendships;
begin
    perform private.require_other_user(v_uid, request_friend.user_id);
    insert into app.friendships (user_low, user_high, requester_id)
    values (least(v_uid, request_friend.user_id), greatest(v_uid, request_friend.user_id), v_uid)
    on conflict (user_low, user_high) do update
        set status = 'accepted', accepted_at = v_now
        where app.friendships.status = 'pending' and app.friendships.requester_id <> v_uid
    returning * into v_row;
    if not found then
        select * into v_row from app.friendships f
        where f.user_low = least(v_uid, request_friend.user_id)
          and f.user_high = greatest(v_uid, request_friend.user_id);
    end if;
    return pg_catalog.jsonb_build_object('user_id', request_friend.user_id, 'status', v_row.status);
end;
$$;
grant execute on function api.request_friend(uuid) to authenticated, service_role;

/**
 * Accepts user_id's pending request. 404 when there is none.
 * @returns {user_id:uuid, status:string}
 */
create function api.accept_friend(user_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
begin
    perform private.require_other_user(v_uid, accept_friend.user_id);
    update app.friendships f set status = 'accepted', accepted_at = pg_catalog.now()
    where f.user_low = least(v_uid, accept_friend.user_id)
      and f.user_high = greatest(v_uid, accept_friend.user_id)
      and f.requester_id = accept_friend.user_id and f.status = 'pending';
    if not found then
        if private.are_friends(v_uid, accept_friend.user_id) then
            return pg_catalog.jsonb_build_object('user_id', accept_friend.user_id, 'status', 'accepted');
        end if;
        raise exception using errcode = 'PT404', message = 'No friend request from this user.';
    end if;
    return pg_catalog.jsonb_build_object('user_id', accept_friend.user_id, 'status', 'accepted');
end;
$$;
grant execute on function api.accept_friend(uuid) to authenticated, service_role;

/**
 * Ends a friendship, or withdraws or declines a request. 404 when there is none.
 */
create function api.remove_friend(user_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
begin
    perform private.require_other_user(v_uid, remove_friend.user_id);
    delete from app.friendships f
    where f.user_low = least(v_uid, remove_friend.user_id)
      and f.user_high = greatest(v_uid, remove_friend.user_id);
    if not found then
        raise exception using errcode = 'PT404', message = 'No friendship or request with this user.';
    end if;
end;
$$;
grant execute on function api.remove_friend(uuid) to authenticated, service_role;

/**
 * The caller's friends and requests, newest first (the friendship's created_at,
 * then the other person's id, descending):
 * [{user_id, display_name, status, direction, created_at, accepted_at}] where
 * direction is 'incoming' or 'outgoing' for pending requests and null for
 * friends. A page of `max_rows` (1 to 200, default 50); the next page: `after`
 * = the user_id of the last person received. A page that continues says so in
 * its Link header (docs/http.md, "Pages").
 * @arg max_rows minimum=1 maximum=200
 * @returns [{user_id:uuid, display_name:string?, status:pending|accepted, direction:incoming|outgoing?, created_at:date-time, accepted_at:date-time?}]
 * @link accept_friend user_id=0.user_id
 * @link remove_friend user_id=0.user_id
 * @link request_friend user_id=0.user_id
 */
create function api.list_friends(max_rows integer default 50, after uuid default null)
returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limit integer := private.page_size(list_friends.max_rows);
    v_after timestamptz;
    v_items jsonb;
begin
    if list_friends.after is not null then
        select f.created_at into v_after from app.friendships f
        where f.user_low = least(v_uid, list_friends.after)
          and f.user_high = greatest(v_uid, list_friends.after);
        if not found then
            perform private.page_cursor_unknown('after');
        end if;
    end if;
    -- The caller is on either side of a pair: one index range per side
    -- (friendships_low_order_idx, friendships_high_order_idx), as UNION ALL
    -- rather than one OR, merged and cut to the page.
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'user_id', f.other, 'display_name', p.display_name, 'status', f.status,
            'direction', case when f.status = 'accepted' then null
                              when f.requester_id = v_uid then 'outgoing' else 'incoming' end,
            'created_at', f.created_at, 'accepted_at', f.accepted_at)
        order by f.created_at desc, f.other desc)
    into v_items
    from (
        select u.* from (
            (select f.user_high as other, f.status, f.requester_id, f.created_at, f.accepted_at
             from app.friendships f
             where f.user_low = v_uid
               and (v_after is null
                    or (f.created_at, f.user_high) < (v_after, list_friends.after))
             order by f.created_at desc, f.user_high desc
             limit v_limit + 1)
            union all
            (select f.user_low, f.status, f.requester_id, f.created_at, f.accepted_at
             from app.friendships f
             where f.user_high = v_uid
               and (v_after is null
                    or (f.created_at, f.user_low) < (v_after, list_friends.after))
             order by f.created_at desc, f.user_low desc
             limit v_limit + 1)) u
        order by u.created_at desc, u.other desc
        limit v_limit + 1) f
    left join app.profiles p on p.id = f.other;
    return private.page(v_items, v_limit, 'user_id');
end;
$$;
grant execute on function api.list_friends(integer, uuid) to authenticated, service_role;
