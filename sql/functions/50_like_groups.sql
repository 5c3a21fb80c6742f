-- Like groups (seed flow 2): a user applies to attend an event with up to 9
-- friends; the event's authors approve or reject.
--
-- Every change to a group locks its row first, so member counts, approvals and
-- the decision are serialised per group. Nobody is in two pending groups of one
-- event: a partial unique index says so (app.like_group_members), not a read.
-- The authors' approvals and the decision are in 55_like_group_approvals.sql.

/**
 * Writes a notification for a user and publishes it on their topic
 * (private.publish, 45_realtime.sql).
 */
create function private.notify_user(user_id uuid, type text, data jsonb) returns void
language plpgsql volatile
set search_path = ''
as $$
declare
    v_id uuid;
begin
    insert into app.notifications (user_id, type, data)
    values (notify_user.user_id, notify_user.type, notify_user.data)
    returning id into v_id;
    perform private.publish('user:' || notify_user.user_id::text,
        pg_catalog.jsonb_build_object('type', notify_user.type, 'notification_id', v_id) || notify_user.data);
end;
$$;

/**
 * True when the caller may see the like group: a member, or the event's
 * creator or a current author. Policies pass the row's event too, so the check
 * reads one shard on a Citus cluster.
 */
create function private.can_view_like_group(group_id uuid, event_id uuid default null) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
declare
    -- Read once here (on a cluster, functions inside a query run on the worker).
    v_uid uuid := auth.uid();
    v_event uuid := coalesce(can_view_like_group.event_id,
                             private.like_group_event(can_view_like_group.group_id));
begin
    return (
        select exists (
            select 1 from app.like_groups g
            join app.events e on e.id = g.event_id
            where g.event_id = v_event and e.id = v_event
              and g.id = can_view_like_group.group_id
              and (e.creator_id = v_uid
                   or exists (select 1 from app.like_group_members m
                              where m.event_id = v_event and m.group_id = g.id
                                and m.user_id = v_uid)
                   or exists (select 1 from app.event_authors a
                              where a.event_id = v_event and a.user_id = v_uid))));
end;
$$;
grant execute on function private.can_view_like_group(uuid, uuid) to authenticated, service_role;

/**
 * The event of a like group, or null. Every read and lock of a group's rows
 * names its event too: on a Citus cluster that is the distribution column, and
 * a read that names it runs on one shard. The event is read from the group's
 * route (app.like_group_routes, written by like_event), which a cluster
 * distributes by the group's id: one shard, not every shard of the groups.
 */
create function private.like_group_event(group_id uuid) returns uuid
language plpgsql stable
set search_path = ''
as $$
begin
    return (select r.event_id from app.like_group_routes r where r.id = like_group_event.group_id);
end;
$$;

/**
 * {id, event_id, creator_id, status, member_ids (creator first), created_at,
 *  approvals_received, approvals_needed, chat_id}
 *
 * The tally is like_group_tally's, computed here from the same scans that build
 * the answer (the members once, the authors once): every lookup is an index-only
 * scan (migration 0011), which is what keeps this cheap at a million rows.
 */
create function private.like_group_json(group_id uuid, event_id uuid default null) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
    v_event uuid := coalesce(like_group_json.event_id, private.like_group_event(like_group_json.group_id));
begin
    -- Every read names the group's event as a value (not only through the
    -- join): on a Citus cluster the distribution column, so the whole answer
    -- comes from one shard.
    return (
        select pg_catalog.jsonb_build_object(
            'id', g.id, 'event_id', g.event_id, 'creator_id', g.creator_id, 'status', g.status,
            'member_ids', m.ids,
            'created_at', g.created_at,
            'approvals_received', v.received, 'approvals_needed', least(a.authors, m.members),
            'chat_id', (select c.id from app.chats c
                        where c.event_id = v_event and c.like_group_id = g.id))
        from app.like_groups g
        cross join lateral (
            select coalesce(pg_catalog.jsonb_agg(m.user_id
                       order by m.user_id = g.creator_id desc, m.created_at, m.user_id), '[]') ids,
                   pg_catalog.count(*)::integer members
            from app.like_group_members m
            where m.event_id = v_event and m.group_id = g.id) m
        cross join lateral (
            select pg_catalog.count(*)::integer authors
            from app.event_authors a where a.event_id = v_event) a
        cross join lateral (
            select pg_catalog.count(*)::integer received
            from app.like_group_approvals v
            join app.event_authors a on a.event_id = v.event_id and a.user_id = v.author_id
            where v.event_id = v_event and a.event_id = v_event
              and v.group_id = g.id and v.approved) v
        where g.event_id = v_event and g.id = like_group_json.group_id);
end;
$$;

/**
 * Locks the like group; 404 when it does not exist.
 */
create function private.lock_like_group(group_id uuid) returns app.like_groups
language plpgsql volatile
set search_path = ''
as $$
declare
    v_event uuid := private.like_group_event(lock_like_group.group_id);
    v_group app.like_groups;
begin
    select * into v_group from app.like_groups g
    where g.event_id = v_event and g.id = lock_like_group.group_id
    for update;
    if not found then
        raise exception using errcode = 'PT404', message = 'Like group not found.';
    end if;
    return v_group;
end;
$$;

/**
 * Raises 400 unless the group is pending.
 */
create function private.require_pending(g app.like_groups) returns void
language plpgsql immutable
set search_path = ''
as $$
begin
    if g.status <> 'pending' then
        raise exception using errcode = 'PT400',
            message = pg_catalog.format('The group is %s, not pending.', g.status);
    end if;
end;
$$;

/**
 * Applies to attend an event with friends: creates a pending like group of the
 * caller and member_ids (friends of the caller, at most 9). Authors cannot like
 * their own event (403); members must be friends (403) and not authors (403);
 * more than 10 people 409; anyone already in a pending group of this event 409.
 * @arg member_ids maxItems=9
 * @returns {id:uuid, event_id:uuid, creator_id:uuid, status:pending|approved|rejected, member_ids:[uuid], created_at:date-time, approvals_received:integer, approvals_needed:integer, chat_id:uuid?}
 * @link get_like_group group_id=id
 * @link approve_like_group group_id=id
 * @link reject_like_group group_id=id
 * @link add_like_group_member group_id=id
 * @link remove_like_group_member group_id=id
 * @link list_like_group_approvals group_id=id
 */
create function api.like_event(event_id uuid, member_ids uuid[] default '{}') returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_members uuid[];
    v_group app.like_groups;
    v_bad uuid;
    v_member uuid;
begin
    if not exists (select from app.events e where e.id = like_event.event_id) then
        raise exception using errcode = 'PT404', message = 'Event not found.';
    end if;
    -- Shares the event's authors lock with other likes; add_event_author takes
    -- it exclusively, so an author is never added beside a pending membership.
    perform private.lock_event_authors(like_event.event_id, false);
    if private.is_event_author(like_event.event_id, v_uid) then
        raise exception using errcode = '42501', message = 'Authors cannot like their own event.';
    end if;
    select coalesce(pg_catalog.array_agg(distinct x), '{}') into v_members
    from pg_catalog.unnest(coalesce(like_event.member_ids, '{}')) x
    where x is not null and x <> v_uid;
    if pg_catalog.cardinality(v_members) > 9 then
        raise exception using errcode = 'PT409',
            message = 'A like group has at most 10 people, its creator included.';
    end if;
    select x into v_bad from pg_catalog.unnest(v_members) x
    where not private.are_friends(v_uid, x) limit 1;
    if found then
        raise exception using errcode = '42501', message = 'Only friends can be added to a like group.',
            detail = v_bad::text;
    end if;
    select x into v_bad from pg_catalog.unnest(v_members) x
    where private.is_event_author(like_event.event_id, x) limit 1;
    if found then
        raise exception using errcode = '42501', message = 'An author of the event cannot be in a like group.',
            detail = v_bad::text;
    end if;

    insert into app.like_groups (event_id, creator_id) values (like_event.event_id, v_uid)
    returning * into v_group;
    -- The group's route to its event, in the same transaction (see
    -- private.like_group_event).
    insert into app.like_group_routes (id, event_id) values (v_group.id, v_group.event_id);
    -- One row at a time, each skipped on a conflict rather than caught (no
    -- exception block: it would open a subtransaction on every like). The group
    -- is new, so the only conflict is like_group_members_one_pending_per_event:
    -- the member is in another pending group of the event (committed, or
    -- committed meanwhile: the insert waits for it). The raise undoes it all.
    foreach v_member in array pg_catalog.array_prepend(v_uid, v_members) loop
        insert into app.like_group_members (group_id, event_id, user_id)
        values (v_group.id, v_group.event_id, v_member)
        on conflict do nothing;
        if not found then
            raise exception using errcode = 'PT409',
                message = 'Someone in this group is already in a pending like group for this event.';
        end if;
    end loop;
    perform private.webhook_event('like_group.created', pg_catalog.jsonb_build_object('group_id', v_group.id, 'event_id', v_group.event_id, 'creator_id', v_uid, 'member_ids', pg_catalog.to_jsonb(pg_catalog.array_prepend(v_uid, v_members))));
    perform private.publish_queue_change(v_group.event_id, v_group.id, 'pending');
    return private.like_group_json(v_group.id, v_group.event_id);
end;
$$;
grant execute on function api.like_event(uuid, uuid[]) to authenticated, service_role;

/**
 * Raises 404 when the like group does not exist and 403 when the caller may
 * not see it (members, the event's creator and authors may). Returns the
 * group's event, found once for the reads that follow.
 */
create function private.require_like_group_viewer(group_id uuid) returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
    v_event uuid;
begin
    perform private.require_user();
    v_event := private.like_group_event(require_like_group_viewer.group_id);
    if v_event is null then
        raise exception using errcode = 'PT404', message = 'Like group not found.';
    end if;
    if not private.can_view_like_group(require_like_group_viewer.group_id, v_event) then
        raise exception using errcode = '42501', message = 'You cannot see this like group.';
    end if;
    return v_event;
end;
$$;

/**
 * A like group, for its members and the event's creator and authors.
 * @returns {id:uuid, event_id:uuid, creator_id:uuid, status:pending|approved|rejected, member_ids:[uuid], created_at:date-time, approvals_received:integer, approvals_needed:integer, chat_id:uuid?}
 */
create function api.get_like_group(group_id uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
    return private.like_group_json(get_like_group.group_id,
                                   private.require_like_group_viewer(get_like_group.group_id));
end;
$$;
grant execute on function api.get_like_group(uuid) to authenticated, service_role;

/**
 * Adds a friend of the creator to a pending group (creator only). At most 10
 * members, enforced under the group's row lock; nobody in two pending groups
 * of one event, enforced by a unique index. Returns the group.
 * @returns {id:uuid, event_id:uuid, creator_id:uuid, status:pending|approved|rejected, member_ids:[uuid], created_at:date-time, approvals_received:integer, approvals_needed:integer, chat_id:uuid?}
 */
create function api.add_like_group_member(group_id uuid, user_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    -- Found first: on a Citus cluster a row lock names the distribution column.
    v_event uuid := private.like_group_event(add_like_group_member.group_id);
    v_group app.like_groups;
begin
    -- The caller first, unlocked (the creator never changes); then the event's
    -- authors lock (as add_event_author, which then locks groups), shared with
    -- other adds: an author is never added beside a pending membership.
    select * into v_group from app.like_groups g
    where g.event_id = v_event and g.id = add_like_group_member.group_id;
    if found and v_group.creator_id <> v_uid then
        raise exception using errcode = '42501', message = 'Only the group''s creator can add members.';
    end if;
    if v_event is not null then
        perform private.lock_event_authors(v_event, false);
    end if;
    v_group := private.lock_like_group(add_like_group_member.group_id);
    perform private.require_pending(v_group);
    if add_like_group_member.user_id is null
       or not exists (select from auth.users u where u.id = add_like_group_member.user_id) then
        raise exception using errcode = 'PT404', message = 'User not found.';
    end if;
    if exists (select from app.like_group_members m
               where m.event_id = v_group.event_id and m.group_id = v_group.id
                 and m.user_id = add_like_group_member.user_id) then
        return private.like_group_json(v_group.id, v_group.event_id);
    end if;
    if not private.are_friends(v_uid, add_like_group_member.user_id) then
        raise exception using errcode = '42501', message = 'Only friends can be added to a like group.';
    end if;
    if private.is_event_author(v_group.event_id, add_like_group_member.user_id) then
        raise exception using errcode = '42501', message = 'An author of the event cannot be in a like group.';
    end if;
    if (select pg_catalog.count(*) from app.like_group_members m
        where m.event_id = v_group.event_id and m.group_id = v_group.id) >= 10 then
        raise exception using errcode = 'PT409',
            message = 'A like group has at most 10 people, its creator included.';
    end if;
    -- A conflict is skipped, not caught (no subtransaction): the group holds no
    -- row of the user (checked above, under the group's lock), so it is the
    -- user's other pending group of the event.
    insert into app.like_group_members (group_id, event_id, user_id)
    values (v_group.id, v_group.event_id, add_like_group_member.user_id)
    on conflict do nothing;
    if not found then
        raise exception using errcode = 'PT409',
            message = 'This user is already in a pending like group for this event.';
    end if;
    return private.like_group_json(v_group.id, v_group.event_id);
end;
$$;
grant execute on function api.add_like_group_member(uuid, uuid) to authenticated, service_role;

/**
 * Removes a member from a pending group: the creator removes others, a member
 * removes themself (the creator cannot leave their own group: 400). Approvals
 * already given still count, so the smaller threshold may approve the group
 * here, with every side effect. Returns the group. Whoever may not see the
 * group gets the 404 of a group that does not exist, before its state is
 * looked at (no oracle of existence or state).
 * @returns {id:uuid, event_id:uuid, creator_id:uuid, status:pending|approved|rejected, member_ids:[uuid], created_at:date-time, approvals_received:integer, approvals_needed:integer, chat_id:uuid?}
 */
create function api.remove_like_group_member(group_id uuid, user_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_event uuid := private.like_group_event(remove_like_group_member.group_id);
    v_group app.like_groups;
    v_batch boolean := private.publish_batch_begin();
begin
    -- Who may remove is checked before the group is locked (its creator never
    -- changes), so nobody else can make the group wait.
    select * into v_group from app.like_groups g
    where g.event_id = v_event and g.id = remove_like_group_member.group_id;
    if not found or not private.can_view_like_group(v_group.id, v_event) then
        raise exception using errcode = 'PT404', message = 'Like group not found.';
    end if;
    if v_uid <> v_group.creator_id and v_uid is distinct from remove_like_group_member.user_id then
        raise exception using errcode = '42501',
            message = 'Only the group''s creator can remove other members.';
    end if;
    v_group := private.lock_like_group(remove_like_group_member.group_id);
    perform private.require_pending(v_group);
    if remove_like_group_member.user_id = v_group.creator_id then
        raise exception using errcode = 'PT400', message = 'The creator cannot leave their own like group.';
    end if;
    delete from app.like_group_members m
    where m.event_id = v_group.event_id and m.group_id = v_group.id
      and m.user_id = remove_like_group_member.user_id;
    if not found then
        raise exception using errcode = 'PT404', message = 'This user is not a member of the group.';
    end if;
    perform private.evaluate_like_group(v_group.id);
    perform private.publish_batch_end(v_batch);
    return private.like_group_json(v_group.id, v_group.event_id);
end;
$$;
grant execute on function api.remove_like_group_member(uuid, uuid) to authenticated, service_role;
