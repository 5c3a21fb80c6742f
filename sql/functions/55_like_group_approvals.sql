-- Like groups (seed flow 2): the authors' approvals and the decision.
--
-- A group is approved when approvals from current authors reach
-- min(authors, members); approving creates the chat, its participants, the
-- members' notifications and the realtime messages in the same transaction.
-- Every change locks the group's row first (50_like_groups.sql).

/**
 * The threshold and the approvals that count: {received, needed}.
 */
create function private.like_group_tally(group_id uuid, event_id uuid,
                                       out received integer, out needed integer)
language plpgsql stable
set search_path = ''
as $$
begin
    select
        (select pg_catalog.count(*)::integer from app.like_group_approvals v
         join app.event_authors a on a.event_id = v.event_id and a.user_id = v.author_id
         where v.event_id = like_group_tally.event_id and v.group_id = like_group_tally.group_id
           and v.approved),
        least(
            (select pg_catalog.count(*)::integer from app.event_authors a
             where a.event_id = like_group_tally.event_id),
            (select pg_catalog.count(*)::integer from app.like_group_members m
             where m.event_id = like_group_tally.event_id and m.group_id = like_group_tally.group_id))
    into like_group_tally.received, like_group_tally.needed;
end;
$$;

/**
 * Records the decision ('approved' or 'rejected') on a locked, pending group and
 * tells its members: the status, the members freed for other groups of the
 * event, a group_approved / group_rejected notification per member (with the
 * chat, when there is one) and a message on the group's realtime topic.
 */
create function private.decide_like_group(
    g app.like_groups, decision text, chat_id uuid default null
) returns void
language plpgsql volatile
set search_path = ''
as $$
declare
    v_type text := 'group_' || decision;
    v_member uuid;
begin
    update app.like_groups l set status = decision, decided_at = pg_catalog.now()
    where l.event_id = g.event_id and l.id = g.id;
    perform private.webhook_event('like_group.' || decision, pg_catalog.jsonb_build_object('group_id', g.id, 'event_id', g.event_id, 'chat_id', chat_id));
    update app.like_group_members m set pending = false
    where m.event_id = g.event_id and m.group_id = g.id;
    for v_member in
        select m.user_id from app.like_group_members m
        where m.event_id = g.event_id and m.group_id = g.id order by m.user_id
    loop
        perform private.notify_user(v_member, v_type, pg_catalog.jsonb_strip_nulls(
            pg_catalog.jsonb_build_object('group_id', g.id, 'event_id', g.event_id,
                                          'chat_id', chat_id)));
    end loop;
    perform private.publish('group:' || g.id::text, pg_catalog.jsonb_strip_nulls(
        pg_catalog.jsonb_build_object('type', v_type, 'group_id', g.id, 'chat_id', chat_id)));
end;
$$;

/**
 * Approves a locked, pending group when approvals from current authors reach
 * min(authors, members): status, chat with every member and author, a
 * group_approved notification per member, realtime messages. Returns the
 * group's status afterwards.
 */
create function private.evaluate_like_group(group_id uuid) returns text
language plpgsql volatile
set search_path = ''
as $$
declare
    v_group app.like_groups := private.lock_like_group(evaluate_like_group.group_id);
    v_tally record;
    v_chat uuid;
begin
    if v_group.status <> 'pending' then
        return v_group.status;
    end if;
    select t.received, t.needed into v_tally
    from private.like_group_tally(v_group.id, v_group.event_id) t;
    if v_tally.received < v_tally.needed then
        return 'pending';
    end if;

    insert into app.chats (type, like_group_id, event_id)
    values ('approved_group', v_group.id, v_group.event_id)
    returning id into v_chat;
    insert into app.chat_participants (chat_id, user_id, event_id)
    select v_chat, x.user_id, v_group.event_id from (
        select m.user_id from app.like_group_members m
        where m.event_id = v_group.event_id and m.group_id = v_group.id
        union
        select a.user_id from app.event_authors a where a.event_id = v_group.event_id) x;
    perform private.decide_like_group(v_group, 'approved', v_chat);
    return 'approved';
end;
$$;

/**
 * The decisions on a group: [{id, group_id, author_id, approved, created_at}],
 * for whoever may see the group.
 * @returns [{id:uuid, group_id:uuid, author_id:uuid, approved:boolean, created_at:date-time}]
 */
create function api.list_like_group_approvals(group_id uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_event uuid := private.require_like_group_viewer(list_like_group_approvals.group_id);
begin
    return (
        select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'id', v.id, 'group_id', v.group_id, 'author_id', v.author_id,
                'approved', v.approved, 'created_at', v.created_at)
            order by v.created_at, v.id), '[]'::jsonb)
        from app.like_group_approvals v
        where v.event_id = v_event and v.group_id = list_like_group_approvals.group_id);
end;
$$;
grant execute on function api.list_like_group_approvals(uuid) to authenticated, service_role;

/**
 * Checks that the caller is a current author of the group's event (403),
 * then locks the group (404 when there is none) and checks that it is
 * pending (400).
 */
create function private.lock_like_group_for_author(group_id uuid) returns app.like_groups
language plpgsql volatile
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_event uuid := private.like_group_event(lock_like_group_for_author.group_id);
    v_group app.like_groups;
begin
    -- The caller first, then the lock: only the event's authors can make the
    -- group wait. A group that does not exist is lock_like_group's 404.
    if v_event is not null and not private.is_event_author(v_event, v_uid) then
        raise exception using errcode = '42501', message = 'Only the event''s authors can decide on its like groups.';
    end if;
    v_group := private.lock_like_group(lock_like_group_for_author.group_id);
    perform private.require_pending(v_group);
    return v_group;
end;
$$;

/**
 * An author approves a pending group; a second approval by the same author
 * changes nothing. Returns {id, status, chat_id}.
 * @returns {id:uuid, status:pending|approved|rejected, chat_id:uuid?}
 */
create function api.approve_like_group(group_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_group app.like_groups := private.lock_like_group_for_author(approve_like_group.group_id);
    v_status text;
    -- The members', the group's and the queue's messages: one NOTIFY.
    v_batch boolean := private.publish_batch_begin();
begin
    insert into app.like_group_approvals (group_id, event_id, author_id, approved)
    values (v_group.id, v_group.event_id, auth.uid(), true)
    on conflict on constraint like_group_approvals_one_per_author do nothing;
    v_status := private.evaluate_like_group(v_group.id);
    perform private.publish_queue_change(v_group.event_id, v_group.id, v_status);
    perform private.publish_batch_end(v_batch);
    return pg_catalog.jsonb_build_object('id', v_group.id, 'status', v_status,
        'chat_id', (select c.id from app.chats c
                    where c.event_id = v_group.event_id and c.like_group_id = v_group.id));
end;
$$;
grant execute on function api.approve_like_group(uuid) to authenticated, service_role;

/**
 * An author rejects a pending group: it is rejected at once, its members are
 * notified (group_rejected), no chat is created. Returns {id, status}.
 * @returns {id:uuid, status:string}
 */
create function api.reject_like_group(group_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_group app.like_groups := private.lock_like_group_for_author(reject_like_group.group_id);
    v_batch boolean := private.publish_batch_begin();
begin
    insert into app.like_group_approvals (group_id, event_id, author_id, approved)
    values (v_group.id, v_group.event_id, auth.uid(), false)
    on conflict on constraint like_group_approvals_one_per_author do update set approved = false;
    perform private.decide_like_group(v_group, 'rejected');
    perform private.publish_queue_change(v_group.event_id, v_group.id, 'rejected');
    perform private.publish_batch_end(v_batch);
    return pg_catalog.jsonb_build_object('id', v_group.id, 'status', 'rejected');
end;
$$;
grant execute on function api.reject_like_group(uuid) to authenticated, service_role;
