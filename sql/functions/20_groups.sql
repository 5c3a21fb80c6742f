-- Groups and their members (seed flow 1). Invite codes, the way in, are in
-- 22_group_invites.sql.

/**
 * True when the caller is a member of the group. Used by policies, so it is a
 * small stable definer function instead of a policy querying another table.
 */
create function private.is_group_member(group_id uuid) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
declare
    -- The caller is read here, once: on a Citus cluster a function inside a
    -- query runs on the worker, where the request's claims are not set.
    v_uid uuid := auth.uid();
begin
    return (
        select exists (
            select from app.group_members m
            where m.group_id = is_group_member.group_id and m.user_id = v_uid));
end;
$$;
grant execute on function private.is_group_member(uuid) to authenticated, service_role;

/**
 * Raises 404 when the group does not exist and 403 when the caller is not a
 * member; returns the caller's membership otherwise.
 */
create function private.require_group_member(group_id uuid) returns app.group_members
language plpgsql stable
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_member app.group_members;
begin
    select * into v_member from app.group_members m
    where m.group_id = require_group_member.group_id and m.user_id = v_uid;
    if found then
        return v_member;
    end if;
    if not exists (select from app.groups g where g.id = require_group_member.group_id) then
        raise exception using errcode = 'PT404', message = 'Group not found.';
    end if;
    raise exception using errcode = '42501', message = 'Only members of the group can do this.';
end;
$$;

/**
 * Creates a group; the caller becomes its owner. The name: 1 to 100
 * characters, no control characters (400). Returns {id, name, creator_id, created_at}.
 * @arg name minLength=1 maxLength=100 pattern=^[^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]*[^\x20\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069][^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$
 * @returns {id:uuid, name:string, creator_id:uuid, created_at:date-time}
 * @link create_group_invite group_id=id
 * @link group_members group_id=id
 * @link list_group_invites group_id=id
 * @link leave_group group_id=id
 */
create function api.create_group(name text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_name text := private.plain_name(create_group.name, 'name', 100);
    v_group app.groups;
begin
    insert into app.groups (name, creator_id, member_count) values (v_name, v_uid, 1)
    returning * into v_group;
    insert into app.group_members (group_id, user_id, role) values (v_group.id, v_uid, 'owner');
    return pg_catalog.jsonb_build_object(
        'id', v_group.id, 'name', v_group.name,
        'creator_id', v_group.creator_id, 'created_at', v_group.created_at);
end;
$$;
grant execute on function api.create_group(text) to authenticated, service_role;

/**
 * The caller's groups, newest membership first:
 * [{id, name, creator_id, role, member_count, created_at, joined_at}].
 * A page of `max_rows` (1 to 200, default 50); the next page: `after` = the id
 * of the last group received. A page that continues says so in its Link header
 * (docs/http.md, "Pages").
 * @arg max_rows minimum=1 maximum=200
 * @returns [{id:uuid, name:string, creator_id:uuid, role:owner|member, member_count:integer, created_at:date-time, joined_at:date-time}]
 */
create function api.my_groups(max_rows integer default 50, after uuid default null) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limit integer := private.page_size(my_groups.max_rows);
    v_after timestamptz;
    v_items jsonb;
begin
    if my_groups.after is not null then
        select m.created_at into v_after from app.group_members m
        where m.group_id = my_groups.after and m.user_id = v_uid;
        if not found then
            perform private.page_cursor_unknown('after');
        end if;
    end if;
    -- One query, one index range (group_members_user_order_idx), and the count
    -- kept on the group's row (member_count) rather than counted per group.
    select (
        select pg_catalog.jsonb_agg(x.item order by x.created_at desc, x.group_id desc)
        from (
            select m.created_at, m.group_id, pg_catalog.jsonb_build_object(
                    'id', g.id, 'name', g.name, 'creator_id', g.creator_id, 'role', m.role,
                    'member_count', g.member_count,
                    'created_at', g.created_at, 'joined_at', m.created_at) item
            from app.group_members m
            join app.groups g on g.id = m.group_id
            where m.user_id = v_uid
              and (v_after is null or (m.created_at, m.group_id) < (v_after, my_groups.after))
            order by m.created_at desc, m.group_id desc
            limit v_limit + 1) x) into v_items;
    -- Trimmed here, on the coordinator of a cluster, where the Link header is
    -- set (inside the query above, a router query would run it on a shard).
    return private.page(v_items, v_limit);
end;
$$;
grant execute on function api.my_groups(integer, uuid) to authenticated, service_role;

/**
 * Members of a group, for its members only (403 otherwise, 404 if no group):
 * [{user_id, display_name, role, joined_at}], oldest first. A page of
 * `max_rows` (1 to 200, default 50); the next page: `after` = the user_id of
 * the last member received. A page that continues says so in its Link header
 * (docs/http.md, "Pages").
 * @arg max_rows minimum=1 maximum=200
 * @returns [{user_id:uuid, display_name:string?, role:owner|member, joined_at:date-time}]
 */
create function api.group_members(group_id uuid, max_rows integer default 50, after uuid default null)
returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_limit integer := private.page_size(group_members.max_rows);
    v_after timestamptz;
    v_items jsonb;
begin
    perform private.require_group_member(group_members.group_id);
    if group_members.after is not null then
        select m.created_at into v_after from app.group_members m
        where m.group_id = group_members.group_id and m.user_id = group_members.after;
        if not found then
            perform private.page_cursor_unknown('after');
        end if;
    end if;
    -- One index range (group_members_group_order_idx), oldest first.
    v_items := (
        select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'user_id', m.user_id, 'display_name', p.display_name,
                'role', m.role, 'joined_at', m.created_at)
            order by m.created_at, m.user_id)
        from (
            select m.user_id, m.role, m.created_at from app.group_members m
            where m.group_id = group_members.group_id
              and (v_after is null or (m.created_at, m.user_id) > (v_after, group_members.after))
            order by m.created_at, m.user_id
            limit v_limit + 1) m
        left join app.profiles p on p.id = m.user_id);
    -- Trimmed here, on the coordinator of a cluster, where the Link header is set.
    return private.page(v_items, v_limit, 'user_id',
                        pg_catalog.format('group_id=%s', group_members.group_id));
end;
$$;
grant execute on function api.group_members(uuid, integer, uuid) to authenticated, service_role;

/**
 * Leaves a group. When the owner leaves, the longest-standing member becomes
 * owner; when the last member leaves, the group and its invites are deleted.
 */
create function api.leave_group(group_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_member app.group_members := private.require_group_member(leave_group.group_id);
    v_next uuid;
begin
    -- A member first (checked before any lock, so nobody else can make the
    -- group wait), then the group's lock, then the membership again: leaves and
    -- ownership hand-overs of one group happen one at a time, on what is
    -- current. Joins take KEY SHARE on the group before locking their invite,
    -- so the last member's leave (which deletes the group and, by cascade, its
    -- invites) and a join wait for each other in one order: group, then invite.
    perform from app.groups g where g.id = leave_group.group_id for update;
    v_member := private.require_group_member(leave_group.group_id);
    delete from app.group_members m
    where m.group_id = leave_group.group_id and m.user_id = v_member.user_id;
    -- The group's row is locked above: the count goes down with the row, in the
    -- same transaction, on the same shard.
    update app.groups g set member_count = g.member_count - 1
    where g.id = leave_group.group_id;
    if v_member.role = 'owner' then
        select m.user_id into v_next from app.group_members m
        where m.group_id = leave_group.group_id
        order by m.created_at, m.user_id limit 1;
        if v_next is null then
            delete from app.groups g where g.id = leave_group.group_id;
        else
            update app.group_members m set role = 'owner'
            where m.group_id = leave_group.group_id and m.user_id = v_next;
        end if;
    end if;
    perform private.audit('group.leave', 'left', 200, leave_group.group_id);
end;
$$;
grant execute on function api.leave_group(uuid) to authenticated, service_role;

/**
 * Trigger on auth.users, before an account is deleted: its memberships are
 * deleted here, one group at a time (the group's row locked first, as
 * leave_group does, in the order of the ids), each taking one off the group's
 * member_count. The foreign key's cascade, which would skip the count, then
 * finds nothing (and on a Citus cluster, which drops keys to auth.users, there
 * is no cascade at all). Ownership is not handed over here.
 */
create function private.handle_deleted_user() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
    v_group uuid;
begin
    for v_group in
        select m.group_id from app.group_members m where m.user_id = old.id order by m.group_id
    loop
        perform from app.groups g where g.id = v_group for no key update;
        delete from app.group_members m where m.group_id = v_group and m.user_id = old.id;
        if found then
            update app.groups g set member_count = g.member_count - 1 where g.id = v_group;
        end if;
    end loop;
    return old;
end;
$$;
create trigger joinery_on_auth_user_deleted
    before delete on auth.users
    for each row execute function private.handle_deleted_user();

/**
 * Sets app.groups.member_count to the real count of members, for one group or
 * (group_id null) for every group whose count is wrong (the ones
 * `python -m gateway verify` reports), one group at a time under its row lock.
 * Returns how many groups were corrected. For an operator's session (no API role may call it).
 */
create function private.recount_group_members(group_id uuid default null) returns integer
language plpgsql volatile
set search_path = ''
as $$
declare
    v_group uuid;
    v_fixed integer := 0;
begin
    for v_group in
        select g.id from app.groups g
        where (recount_group_members.group_id is null or g.id = recount_group_members.group_id)
          and g.member_count <> (select pg_catalog.count(*) from app.group_members m
                                 where m.group_id = g.id)
        order by g.id
    loop
        update app.groups g
        set member_count = (select pg_catalog.count(*) from app.group_members m
                            where m.group_id = v_group)
        where g.id = v_group;
        v_fixed := v_fixed + 1;
    end loop;
    return v_fixed;
end;
$$;
