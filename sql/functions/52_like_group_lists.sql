-- Lists of like groups, one query each (the groups themselves are in
-- 50_like_groups.sql).

/**
 * Like groups the caller created or belongs to, newest membership first, each
 * in like_group's shape. A page of `max_rows` (1 to 200, default 50); the next
 * page: `after` = the id of the last group received. A page that continues
 * says so in its Link header (docs/http.md, "Pages").
 * @arg max_rows minimum=1 maximum=200
 */
create function api.my_like_groups(max_rows integer default 50, after uuid default null)
returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limit integer := private.page_size(my_like_groups.max_rows);
    v_after_event uuid;
    v_after timestamptz;
    v_items jsonb;
begin
    if my_like_groups.after is not null then
        -- The cursor's group through its route (one shard on a cluster).
        v_after_event := private.like_group_event(my_like_groups.after);
        select m.created_at into v_after from app.like_group_members m
        where m.event_id = v_after_event and m.group_id = my_like_groups.after
          and m.user_id = v_uid;
        if not found then
            perform private.page_cursor_unknown('after');
        end if;
    end if;
    -- One query for the page: the caller's memberships (one index range,
    -- like_group_members_user_order_idx), then each group's row, members,
    -- authors, approvals and chat, as like_group_json reads them, every read
    -- joined on the group's event (the distribution column on a cluster).
    select (
        select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'id', g.id, 'event_id', g.event_id, 'creator_id', g.creator_id,
                'status', g.status,
                'member_ids', (
                    select coalesce(pg_catalog.jsonb_agg(m.user_id
                               order by m.user_id = g.creator_id desc, m.created_at, m.user_id),
                               '[]')
                    from app.like_group_members m
                    where m.event_id = g.event_id and m.group_id = g.id),
                'created_at', g.created_at,
                'approvals_received', (
                    select pg_catalog.count(*)::integer
                    from app.like_group_approvals v
                    join app.event_authors a on a.event_id = v.event_id and a.user_id = v.author_id
                    where v.event_id = g.event_id and v.group_id = g.id and v.approved),
                'approvals_needed', least(
                    (select pg_catalog.count(*)::integer from app.event_authors a
                     where a.event_id = g.event_id),
                    (select pg_catalog.count(*)::integer from app.like_group_members m
                     where m.event_id = g.event_id and m.group_id = g.id)),
                'chat_id', (select c.id from app.chats c
                            where c.event_id = g.event_id and c.like_group_id = g.id))
            order by p.created_at desc, p.group_id desc)
        from (
            select m.event_id, m.group_id, m.created_at
            from app.like_group_members m
            where m.user_id = v_uid
              and (v_after is null
                   or (m.created_at, m.group_id) < (v_after, my_like_groups.after))
            order by m.created_at desc, m.group_id desc
            limit v_limit + 1) p
        join app.like_groups g on g.event_id = p.event_id and g.id = p.group_id) into v_items;
    -- Trimmed here, on the coordinator of a cluster, where the Link header is
    -- set (inside the query above, a router query would run it on a shard).
    return private.page(v_items, v_limit);
end;
$$;
grant execute on function api.my_like_groups(integer, uuid) to authenticated, service_role;

/**
 * The authors' approval queue of an event: {event: {id, title}, groups: [...]},
 * one page of `max_rows` groups (1 to 200, default 50): the pending groups
 * first, oldest first (created_at, then id), then the decided ones, the last
 * decided first (decided_at, then id, descending). Each group is like_group's
 * shape plus members: [{id, display_name}] (creator first), approved_by_me and
 * decided_at. The next page: `pending_after` = the id of the last group
 * received when it was pending (the rest of the pending groups, then the
 * decided ones), `decided_after` = the id of the last group received when it
 * was decided (only decided ones after it). A page that continues gives the
 * next one in its Link header (docs/http.md, "Pages"). For the event's current
 * authors only: anyone else gets the same 404 as for an event that does not
 * exist.
 * @arg max_rows minimum=1 maximum=200
 * @returns {event:{id:uuid, title:string}, groups}
 */
create function api.event_like_groups(
    event_id uuid, max_rows integer default 50,
    pending_after uuid default null, decided_after uuid default null
) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limit integer := private.page_size(event_like_groups.max_rows);
    v_event app.events;
    v_pending_after timestamptz;
    v_decided_after timestamptz;
    v_items jsonb;
    v_last jsonb;
begin
    select * into v_event from app.events e where e.id = event_like_groups.event_id;
    if not found or not private.is_event_author(v_event.id, v_uid) then
        raise exception using errcode = 'PT404', message = 'Event not found.';
    end if;
    -- The cursors: a group of this event. pending_after by its created_at,
    -- which a decision does not change (a group decided since the page before
    -- still marks where the pending ones go on); decided_after by its
    -- decided_at, so it must be decided.
    if event_like_groups.decided_after is not null then
        select l.decided_at into v_decided_after from app.like_groups l
        where l.event_id = v_event.id and l.id = event_like_groups.decided_after
          and l.status <> 'pending';
        if not found then
            perform private.page_cursor_unknown('decided_after');
        end if;
    elsif event_like_groups.pending_after is not null then
        select l.created_at into v_pending_after from app.like_groups l
        where l.event_id = v_event.id and l.id = event_like_groups.pending_after;
        if not found then
            perform private.page_cursor_unknown('pending_after');
        end if;
    end if;
    -- One query: a page of pending groups (like_groups_event_pending_idx), then
    -- decided ones (like_groups_event_decided_idx), each one index range of at
    -- most a page and a row, shaped as like_group_json plus members,
    -- approved_by_me and decided_at. Every read names the event as a value (on
    -- a cluster: one shard).
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'id', g.id, 'event_id', g.event_id, 'creator_id', g.creator_id,
            'status', g.status,
            'member_ids', (
                select coalesce(pg_catalog.jsonb_agg(m.user_id
                           order by m.user_id = g.creator_id desc, m.created_at, m.user_id),
                           '[]')
                from app.like_group_members m
                where m.event_id = v_event.id and m.group_id = g.id),
            'created_at', g.created_at,
            'approvals_received', (
                select pg_catalog.count(*)::integer
                from app.like_group_approvals v
                join app.event_authors a on a.event_id = v.event_id and a.user_id = v.author_id
                where v.event_id = v_event.id and a.event_id = v_event.id
                  and v.group_id = g.id and v.approved),
            'approvals_needed', least(
                (select pg_catalog.count(*)::integer from app.event_authors a
                 where a.event_id = v_event.id),
                (select pg_catalog.count(*)::integer from app.like_group_members m
                 where m.event_id = v_event.id and m.group_id = g.id)),
            'chat_id', (select c.id from app.chats c
                        where c.event_id = v_event.id and c.like_group_id = g.id),
            'members', (
                select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'id', m.user_id, 'display_name', p.display_name)
                    order by m.user_id = g.creator_id desc, m.created_at, m.user_id)
                from app.like_group_members m
                join app.profiles p on p.id = m.user_id
                where m.event_id = v_event.id and m.group_id = g.id),
            'approved_by_me', exists (
                select from app.like_group_approvals v
                where v.event_id = v_event.id and v.group_id = g.id
                  and v.author_id = v_uid and v.approved),
            'decided_at', g.decided_at)
        order by g.part, g.n)
    into v_items
    from (
        select q.* from (
            select s.*, 0 as part,
                   pg_catalog.row_number() over (order by s.created_at, s.id) as n
            from (
                select l.id, l.event_id, l.creator_id, l.status, l.decided_at, l.created_at
                from app.like_groups l
                where l.event_id = v_event.id and l.status = 'pending'
                  and event_like_groups.decided_after is null
                  and (v_pending_after is null
                       or (l.created_at, l.id) > (v_pending_after, event_like_groups.pending_after))
                order by l.created_at, l.id
                limit v_limit + 1) s
            union all
            select s.*, 1 as part,
                   pg_catalog.row_number() over (order by s.decided_at desc, s.id desc) as n
            from (
                select l.id, l.event_id, l.creator_id, l.status, l.decided_at, l.created_at
                from app.like_groups l
                where l.event_id = v_event.id and l.status <> 'pending'
                  and (v_decided_after is null
                       or (l.decided_at, l.id) < (v_decided_after, event_like_groups.decided_after))
                order by l.decided_at desc, l.id desc
                limit v_limit + 1) s
        ) q
        order by q.part, q.n
        limit v_limit + 1
    ) g;
    -- Trimmed here (on a cluster: on the coordinator, where the Link header is
    -- set): the next page goes on after the page's last group, from its list.
    v_items := coalesce(v_items, '[]'::jsonb);
    if pg_catalog.jsonb_array_length(v_items) > v_limit then
        v_items := v_items - v_limit;
        v_last := v_items -> (v_limit - 1);
        perform private.next_page(pg_catalog.format('event_id=%s&max_rows=%s&%s=%s',
            v_event.id, v_limit,
            case when v_last ->> 'status' = 'pending' then 'pending_after' else 'decided_after' end,
            v_last ->> 'id'));
    end if;
    return pg_catalog.jsonb_build_object(
        'event', pg_catalog.jsonb_build_object('id', v_event.id, 'title', v_event.title),
        'groups', v_items);
end;
$$;
grant execute on function api.event_like_groups(uuid, integer, uuid, uuid)
    to authenticated, service_role;
