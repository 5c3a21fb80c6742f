-- Group invite codes (seed flow 1): creating, joining by code, previewing,
-- listing and revoking them (the groups themselves are in 20_groups.sql).
--
-- Invite codes are UUID v4 strings, shown once at creation and stored as
-- SHA-256 hashes. A join locks the invite row, so use_count is read and raised
-- in one serialised step and can never pass max_uses (a check constraint backs
-- this up). Joins and previews are rate limited and audited, failures included:
-- those answers set response.status instead of raising, so they commit.

/**
 * The public shape of an invite for its group's members. The code itself is
 * never stored, so only its last four characters are shown.
 */
create function private.group_invite_json(i app.group_invites) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
    return pg_catalog.jsonb_build_object(
        'id', i.id,
        'group_id', i.group_id,
        'code_hint', i.code_hint,
        'created_by', i.created_by,
        'created_at', i.created_at,
        'expires_at', i.expires_at,
        'max_uses', i.max_uses,
        'use_count', i.use_count,
        'revoked_at', i.revoked_at,
        'active', i.revoked_at is null
            and (i.expires_at is null or i.expires_at > pg_catalog.now())
            and (i.max_uses is null or i.use_count < i.max_uses));
end;
$$;

/**
 * Why an invite can no longer be used ('revoked', 'expired', 'used_up'), or null.
 */
create function private.group_invite_unusable_reason(i app.group_invites) returns text
language plpgsql stable
set search_path = ''
as $$
begin
    return case
        when i.revoked_at is not null then 'revoked'
        when i.expires_at is not null and i.expires_at <= pg_catalog.now() then 'expired'
        when i.max_uses is not null and i.use_count >= i.max_uses then 'used_up'
    end;
end;
$$;

/**
 * True when `code` has the shape of an invite code (a UUID, any case).
 */
create function private.is_uuid_text(code text) returns boolean
language plpgsql immutable
set search_path = ''
as $$
begin
    return coalesce(code ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$', false);
end;
$$;

/**
 * The group an invite code belongs to, or null: read from its route
 * (app.group_invite_routes, written with the invite). On a Citus cluster the
 * routes are distributed by the code's hash, so this reads one shard, and the
 * group it returns names the shard of the invite, its group and its members.
 */
create function private.invite_code_group(code text) returns uuid
language plpgsql stable
set search_path = ''
as $$
begin
    return (select r.group_id from app.group_invite_routes r
            where r.code_hash = private.hash_secret(pg_catalog.lower(invite_code_group.code)));
end;
$$;

/**
 * Creates an invite code for a group the caller belongs to. `expires_in`
 * (seconds, > 0) and `max_uses` (>= 1) are optional. Rate limited
 * ('create_invite'); refused and invalid attempts are counted and audited.
 * Returns {id, code, group_id, created_at, expires_at, max_uses}; the code is
 * shown only here.
 * @arg expires_in minimum=1
 * @arg max_uses minimum=1
 * @returns {id:uuid, code:uuid, group_id:uuid, created_at:date-time, expires_at:date-time?, max_uses:integer?}
 * @link join_group code=code
 * @link preview_group_invite code=code
 * @link revoke_group_invite code=code
 */
create function api.create_group_invite(
    group_id uuid, expires_in integer default null, max_uses integer default null
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limited jsonb := private.rate_limited('create_invite', 'group_invite.create',
                                            create_group_invite.group_id);
    v_code text;
    v_invite app.group_invites;
begin
    if v_limited is not null then
        return v_limited;
    end if;
    if create_group_invite.group_id is null
       or not exists (select from app.groups g where g.id = create_group_invite.group_id) then
        return private.refuse('group_invite.create', 404, 'not_found', 'Group not found.',
            subject_id => create_group_invite.group_id);
    end if;
    if not exists (select from app.group_members m
                   where m.group_id = create_group_invite.group_id and m.user_id = v_uid) then
        return private.refuse('group_invite.create', 403, 'forbidden',
            'Only members of the group can create invite codes.',
            subject_id => create_group_invite.group_id);
    end if;
    if create_group_invite.expires_in is not null and create_group_invite.expires_in <= 0 then
        return private.refuse('group_invite.create', 400, 'invalid',
            'expires_in must be a positive number of seconds.',
            subject_id => create_group_invite.group_id, details => 'expires_in');
    end if;
    if create_group_invite.max_uses is not null and create_group_invite.max_uses < 1 then
        return private.refuse('group_invite.create', 400, 'invalid', 'max_uses must be at least 1.',
            subject_id => create_group_invite.group_id, details => 'max_uses');
    end if;

    v_code := pg_catalog.gen_random_uuid()::text;
    insert into app.group_invites (group_id, created_by, code_hash, code_hint, expires_at, max_uses)
    values (
        create_group_invite.group_id, v_uid, private.hash_secret(v_code), pg_catalog.right(v_code, 4),
        pg_catalog.now() + pg_catalog.make_interval(secs => create_group_invite.expires_in),
        create_group_invite.max_uses)
    returning * into v_invite;
    -- The code's route to its group, in the same transaction (see
    -- private.invite_code_group).
    insert into app.group_invite_routes (code_hash, group_id)
    values (v_invite.code_hash, v_invite.group_id);
    perform private.audit('group_invite.create', 'created', 201, v_invite.id,
        pg_catalog.jsonb_build_object('group_id', v_invite.group_id));
    return pg_catalog.jsonb_build_object(
        'id', v_invite.id, 'code', v_code, 'group_id', v_invite.group_id,
        'created_at', v_invite.created_at, 'expires_at', v_invite.expires_at,
        'max_uses', v_invite.max_uses);
end;
$$;
grant execute on function api.create_group_invite(uuid, integer, integer) to authenticated, service_role;

/**
 * Joins the group of an invite code. Malformed code 400, unknown 404, revoked,
 * expired or used up 410, too many attempts 429. A caller already in the group
 * gets their membership back and consumes no use. Every attempt is counted
 * ('join_code') and audited. Returns
 * {group: {id, name}, membership: {user_id, group_id, role, joined_at}}.
 * @arg code pattern=^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$
 * @returns {group:{id:uuid, name:string}, membership:{user_id:uuid, group_id:uuid, role:owner|member, joined_at:date-time}}
 * @link group_members group_id=group.id
 * @link leave_group group_id=group.id
 */
create function api.join_group(code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limited jsonb := private.rate_limited('join_code', 'group.join');
    v_group_id uuid;
    v_invite app.group_invites;
    v_member app.group_members;
    v_reason text;
    v_consumed boolean := false;
begin
    if v_limited is not null then
        return v_limited;
    end if;
    if not private.is_uuid_text(join_group.code) then
        return private.refuse('group.join', 400, 'malformed',
            'The invite code is malformed.',
            hint => 'An invite code looks like 7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b.');
    end if;

    -- A code with max_uses: the row lock serialises every join on it, so
    -- use_count is read and raised by one transaction at a time. A code without
    -- max_uses has no limit to check: it is read without a lock, and its
    -- use_count is raised by the UPDATE below alone (which re-reads the latest
    -- row, so concurrent joins each add one). The group is found first and named
    -- in every read and write of the invite: on a Citus cluster invites live on
    -- their group's shard, and a row lock must name the distribution column.
    v_group_id := private.invite_code_group(join_group.code);
    -- The group before the invite (the membership's foreign key would take this
    -- KEY SHARE later anyway): leave_group locks the group, then deletes its
    -- invites when the last member leaves; taken in the other order the two
    -- deadlock. A group deleted meanwhile leaves no invite: 404 below.
    if v_group_id is not null then
        perform from app.groups g where g.id = v_group_id for key share;
    end if;
    select * into v_invite from app.group_invites i
    where i.group_id = v_group_id
      and i.code_hash = private.hash_secret(pg_catalog.lower(join_group.code));
    if not found then
        return private.refuse('group.join', 404, 'not_found', 'No invite with this code.');
    end if;
    if v_invite.max_uses is not null then
        select * into v_invite from app.group_invites i
        where i.group_id = v_invite.group_id and i.id = v_invite.id
        for update;
        if not found then  -- revoked and deleted with its group meanwhile
            return private.refuse('group.join', 404, 'not_found', 'No invite with this code.');
        end if;
    end if;

    select * into v_member from app.group_members m
    where m.group_id = v_invite.group_id and m.user_id = v_uid;
    if not found then
        v_reason := private.group_invite_unusable_reason(v_invite);
        if v_reason is not null then
            return private.refuse('group.join', 410, v_reason, case v_reason
                    when 'revoked' then 'This invite code has been revoked.'
                    when 'expired' then 'This invite code has expired.'
                    else 'This invite code has been used up.' end,
                subject_id => v_invite.id,
                audit_details => pg_catalog.jsonb_build_object('group_id', v_invite.group_id));
        end if;
        -- A join through another code of the same group may have just won.
        insert into app.group_members (group_id, user_id, role, invite_id)
        values (v_invite.group_id, v_uid, 'member', v_invite.id)
        on conflict on constraint group_members_pkey do nothing
        returning * into v_member;
        v_consumed := found;
        if v_consumed then
            -- The count on the group's row, in this transaction: the update waits
            -- for any other join or leave of the group (its row lock), so counts
            -- never get lost; named by id, on the membership's shard.
            update app.groups g set member_count = g.member_count + 1
            where g.id = v_invite.group_id;
            -- Named by group too: on a cluster a write without the distribution
            -- column would lock every shard.
            update app.group_invites i set use_count = i.use_count + 1
            where i.group_id = v_invite.group_id and i.id = v_invite.id;
            perform private.webhook_event('group.member_joined', pg_catalog.jsonb_build_object('group_id', v_invite.group_id, 'user_id', v_uid, 'invite_id', v_invite.id));
        else
            select * into v_member from app.group_members m
            where m.group_id = v_invite.group_id and m.user_id = v_uid;
        end if;
    end if;

    perform private.audit('group.join', case when v_consumed then 'joined' else 'already_member' end,
        200, v_invite.id, pg_catalog.jsonb_build_object('group_id', v_invite.group_id));
    return (
        select pg_catalog.jsonb_build_object(
            'group', pg_catalog.jsonb_build_object('id', g.id, 'name', g.name),
            'membership', pg_catalog.jsonb_build_object(
                'user_id', v_member.user_id, 'group_id', v_member.group_id,
                'role', v_member.role, 'joined_at', v_member.created_at))
        from app.groups g where g.id = v_invite.group_id);
end;
$$;
grant execute on function api.join_group(text) to authenticated, service_role;

/**
 * What an invite code leads to, without joining:
 * {group: {id, name, member_count}, expires_at, uses_left}. Statuses and
 * counting as join_group (it is an attempt to use a code).
 * @arg code pattern=^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$
 * @returns {group:{id:uuid, name:string, member_count:integer}, expires_at:date-time?, uses_left:integer?}
 */
create function api.preview_group_invite(code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_limited jsonb := private.rate_limited('join_code', 'group.preview');
    v_group_id uuid;
    v_invite app.group_invites;
    v_reason text;
begin
    if v_limited is not null then
        return v_limited;
    end if;
    if not private.is_uuid_text(preview_group_invite.code) then
        return private.refuse('group.preview', 400, 'malformed', 'The invite code is malformed.');
    end if;
    -- Its group first (its route), then the invite on the group's shard.
    v_group_id := private.invite_code_group(preview_group_invite.code);
    select * into v_invite from app.group_invites i
    where i.group_id = v_group_id
      and i.code_hash = private.hash_secret(pg_catalog.lower(preview_group_invite.code));
    if not found then
        return private.refuse('group.preview', 404, 'not_found', 'No invite with this code.');
    end if;
    v_reason := private.group_invite_unusable_reason(v_invite);
    if v_reason is not null then
        return private.refuse('group.preview', 410, v_reason,
            'This invite code can no longer be used.', subject_id => v_invite.id);
    end if;
    perform private.audit('group.preview', 'shown', 200, v_invite.id);
    return (
        select pg_catalog.jsonb_build_object(
            'group', pg_catalog.jsonb_build_object(
                'id', g.id, 'name', g.name,
                'member_count', g.member_count),
            'expires_at', v_invite.expires_at,
            'uses_left', v_invite.max_uses - v_invite.use_count)
        from app.groups g where g.id = v_invite.group_id);
end;
$$;
grant execute on function api.preview_group_invite(text) to authenticated, service_role;

/**
 * A group's invites, for its members (403 otherwise, 404 if no group), newest
 * first (created_at, then id, descending): [{id, group_id, code_hint,
 * created_by, created_at, expires_at, max_uses, use_count, revoked_at,
 * active}]. A page of `max_rows` (1 to 200, default 50); the next page:
 * `after` = the id of the last invite received. A page that continues says so
 * in its Link header (docs/http.md, "Pages").
 * @arg max_rows minimum=1 maximum=200
 */
create function api.list_group_invites(
    group_id uuid, max_rows integer default 50, after uuid default null
) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_now timestamptz := pg_catalog.now();
    v_limit integer := private.page_size(list_group_invites.max_rows);
    v_after timestamptz;
    v_items jsonb;
begin
    perform private.require_group_member(list_group_invites.group_id);
    if list_group_invites.after is not null then
        select i.created_at into v_after from app.group_invites i
        where i.group_id = list_group_invites.group_id and i.id = list_group_invites.after;
        if not found then
            perform private.page_cursor_unknown('after');
        end if;
    end if;
    -- One index range (group_invites_group_order_idx, read backwards), shaped
    -- in the query (as private.group_invite_json, spelled out: on a Citus
    -- cluster a function taking the table's row type cannot run inside the
    -- shard's query).
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'id', i.id,
            'group_id', i.group_id,
            'code_hint', i.code_hint,
            'created_by', i.created_by,
            'created_at', i.created_at,
            'expires_at', i.expires_at,
            'max_uses', i.max_uses,
            'use_count', i.use_count,
            'revoked_at', i.revoked_at,
            'active', i.revoked_at is null
                and (i.expires_at is null or i.expires_at > v_now)
                and (i.max_uses is null or i.use_count < i.max_uses))
        order by i.created_at desc, i.id desc)
    into v_items
    from (
        select * from app.group_invites f
        where f.group_id = list_group_invites.group_id
          and (v_after is null or (f.created_at, f.id) < (v_after, list_group_invites.after))
        order by f.created_at desc, f.id desc
        limit v_limit + 1) i;
    -- Trimmed here (on a cluster: on the coordinator, where the Link header is
    -- set); the Link names the group too.
    return private.page(v_items, v_limit, 'id',
                        pg_catalog.format('group_id=%s', list_group_invites.group_id));
end;
$$;
grant execute on function api.list_group_invites(uuid, integer, uuid)
    to authenticated, service_role;

/**
 * Revokes an invite, by its code or by its id (as listed by
 * list_group_invites, since codes are not kept). Allowed to the invite's
 * creator and the group's owner; anyone else gets the same 404 as for a code
 * that does not exist (no oracle). Revoking twice changes nothing. Counted as
 * 'revoke_invite' and audited, refusals included: they are answered, not
 * raised (status and error body; null, hence 204 over HTTP, on success).
 * @arg code pattern=^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$
 */
create function api.revoke_group_invite(code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limited jsonb := private.rate_limited('revoke_invite', 'group_invite.revoke');
    v_group_id uuid;
    v_invite app.group_invites;
begin
    if v_limited is not null then
        return v_limited;
    end if;
    if not private.is_uuid_text(revoke_group_invite.code) then
        return private.refuse('group_invite.revoke', 400, 'malformed',
            'The invite code is malformed.');
    end if;
    -- Group first, then the locking read on it (see join_group).
    -- A code is routed to its group; an invite id (codes are not kept) is
    -- looked for in every group (on a cluster, every shard: revoking by id is
    -- rare and not a hot call).
    v_group_id := private.invite_code_group(revoke_group_invite.code);
    if v_group_id is null then
        select f.group_id into v_group_id from app.group_invites f
        where f.id = revoke_group_invite.code::uuid
        limit 1;
    end if;
    select * into v_invite from app.group_invites i
    where i.group_id = v_group_id
      and (i.code_hash = private.hash_secret(pg_catalog.lower(revoke_group_invite.code))
           or i.id = revoke_group_invite.code::uuid)
    for update;
    if not found then
        return private.refuse('group_invite.revoke', 404, 'not_found', 'No invite with this code.');
    end if;
    if v_invite.created_by <> v_uid and not exists (
        select from app.group_members m
        where m.group_id = v_invite.group_id and m.user_id = v_uid and m.role = 'owner'
    ) then
        -- The same answer as for an unknown code; the audit tells them apart.
        return private.refuse('group_invite.revoke', 404, 'not_allowed', 'No invite with this code.',
            subject_id => v_invite.id, details => 'not_found');
    end if;
    if v_invite.revoked_at is null then
        update app.group_invites i set revoked_at = pg_catalog.now()
        where i.group_id = v_invite.group_id and i.id = v_invite.id;
        perform private.webhook_event('group_invite.revoked', pg_catalog.jsonb_build_object('invite_id', v_invite.id, 'group_id', v_invite.group_id, 'revoked_by', v_uid));
        perform private.audit('group_invite.revoke', 'revoked', 200, v_invite.id);
    else
        perform private.audit('group_invite.revoke', 'already_revoked', 200, v_invite.id);
    end if;
    return null;
end;
$$;
grant execute on function api.revoke_group_invite(text) to authenticated, service_role;
