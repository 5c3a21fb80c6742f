-- Chats, notifications and who may subscribe to which realtime topic.

/**
 * The caller's chats, the one the caller joined last first (the participation's
 * created_at, then the chat's id, descending):
 * [{id, type, like_group_id, participant_ids, created_at}]. A page of
 * `max_rows` (1 to 200, default 50); the next page: `after` = the id of the
 * last chat received. A page that continues says so in its Link header
 * (docs/http.md, "Pages").
 * @arg max_rows minimum=1 maximum=200
 * @returns [{id:uuid, type:string, like_group_id:uuid?, participant_ids:[uuid]?, created_at:date-time}]
 */
create function api.my_chats(max_rows integer default 50, after uuid default null)
returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    -- Read once here (on a cluster, functions inside a query run on the worker).
    v_uid uuid := private.require_user();
    v_limit integer := private.page_size(my_chats.max_rows);
    v_after timestamptz;
    v_items jsonb;
begin
    if my_chats.after is not null then
        select p.created_at into v_after from app.chat_participants p
        where p.user_id = v_uid and p.chat_id = my_chats.after;
        if not found then
            perform private.page_cursor_unknown('after');
        end if;
    end if;
    -- One index range (chat_participants_user_order_idx, read backwards), then
    -- each chat and its participants joined on the chat's event (the
    -- distribution column on a cluster).
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'id', c.id, 'type', c.type, 'like_group_id', c.like_group_id,
            'participant_ids', (select pg_catalog.jsonb_agg(o.user_id order by o.user_id)
                                from app.chat_participants o
                                where o.event_id = c.event_id and o.chat_id = c.id),
            'created_at', c.created_at)
        order by p.created_at desc, p.chat_id desc)
    into v_items
    from (
        select m.event_id, m.chat_id, m.created_at from app.chat_participants m
        where m.user_id = v_uid
          and (v_after is null or (m.created_at, m.chat_id) < (v_after, my_chats.after))
        order by m.created_at desc, m.chat_id desc
        limit v_limit + 1) p
    join app.chats c on c.event_id = p.event_id and c.id = p.chat_id;
    -- Trimmed here, on the coordinator of a cluster, where the Link header is set.
    return private.page(v_items, v_limit);
end;
$$;
grant execute on function api.my_chats(integer, uuid) to authenticated, service_role;

/**
 * The caller's notifications, newest first: [{id, type, data, read_at,
 * created_at}] (unread_only: those not read yet). A page of `max_rows` (1 to
 * 200, default 50); the next page: `after` = the id of the last notification
 * received. A page that continues says so in its Link header (docs/http.md,
 * "Pages").
 * @arg max_rows minimum=1 maximum=200
 * @returns [{id:uuid, type:string, data, read_at:date-time?, created_at:date-time}]
 */
create function api.my_notifications(
    unread_only boolean default false, max_rows integer default 50, after uuid default null
) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limit integer := private.page_size(my_notifications.max_rows);
    v_after timestamptz;
    v_items jsonb;
begin
    if my_notifications.after is not null then
        select n.created_at into v_after from app.notifications n
        where n.user_id = v_uid and n.id = my_notifications.after;
        if not found then
            perform private.page_cursor_unknown('after');
        end if;
    end if;
    -- One index range (notifications_user_order_idx, read backwards).
    select (
        select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'id', n.id, 'type', n.type, 'data', n.data, 'read_at', n.read_at,
                'created_at', n.created_at)
            order by n.created_at desc, n.id desc)
        from (
            select n.id, n.type, n.data, n.read_at, n.created_at from app.notifications n
            where n.user_id = v_uid
              and (not coalesce(my_notifications.unread_only, false) or n.read_at is null)
              and (v_after is null or (n.created_at, n.id) < (v_after, my_notifications.after))
            order by n.created_at desc, n.id desc
            limit v_limit + 1
        ) n) into v_items;
    -- Trimmed here, on the coordinator of a cluster, where the Link header is
    -- set (inside the query above, a router query would run it on a shard).
    return private.page(v_items, v_limit);
end;
$$;
grant execute on function api.my_notifications(boolean, integer, uuid) to authenticated, service_role;

/**
 * Marks the caller's notifications read: those in `ids`, or all when ids is
 * null. Returns {updated: n}.
 * @returns {updated:integer}
 */
create function api.mark_notifications_read(ids uuid[] default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_count integer;
begin
    update app.notifications n set read_at = pg_catalog.now()
    where n.user_id = v_uid and n.read_at is null
      and (mark_notifications_read.ids is null or n.id = any (mark_notifications_read.ids));
    get diagnostics v_count = row_count;
    return pg_catalog.jsonb_build_object('updated', v_count);
end;
$$;
grant execute on function api.mark_notifications_read(uuid[]) to authenticated, service_role;

/**
 * Whether the caller may subscribe to a realtime topic: 'user:{id}' for
 * themself, 'group:{like_group_id}' for whoever may see that like group,
 * 'event:{event_id}' (the approval queue) for the event's current authors.
 * @arg topic pattern=^(user|group|event):[0-9A-Fa-f-]{36}$
 * @returns boolean
 */
create function api.can_subscribe(topic text) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_kind text := pg_catalog.split_part(can_subscribe.topic, ':', 1);
    v_id text := pg_catalog.substr(can_subscribe.topic, pg_catalog.length(v_kind) + 2);
begin
    if not private.is_uuid_text(v_id) then
        return false;
    end if;
    return case v_kind
        when 'user' then v_id::uuid = v_uid
        when 'group' then private.can_view_like_group(v_id::uuid)
        when 'event' then private.is_event_author(v_id::uuid, v_uid)
        else false
    end;
end;
$$;
grant execute on function api.can_subscribe(text) to authenticated, service_role;

/**
 * True when the caller takes part in the chat. Used by policies.
 */
create function private.is_chat_participant(chat_id uuid, event_id uuid default null) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_uid uuid := auth.uid();
begin
    return (
        select exists (
            select 1 from app.chat_participants p
            where (is_chat_participant.event_id is null or p.event_id = is_chat_participant.event_id)
              and p.chat_id = is_chat_participant.chat_id and p.user_id = v_uid));
end;
$$;
grant execute on function private.is_chat_participant(uuid, uuid) to authenticated, service_role;
