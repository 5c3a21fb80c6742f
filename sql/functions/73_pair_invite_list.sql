-- The caller's pair invites, sent and received, a page of each (the invites
-- themselves are in 71_pair_invites.sql).

/**
 * The caller's invitations, newest first: {sent: [...], received: [...]}. Sent
 * ones show the short code, the address they went to, resends (at most 2) and
 * reminded_at (when the one reminder before expiry was handled, else null;
 * both lists show it beside expires_at); received ones are those answered by
 * the caller or sent to the caller's email, and never show other people's
 * addresses. Each list is a page of `max_rows` (1 to 200, default 50), the
 * next one after `sent_after` / `received_after` = the id of the last invite
 * of that list received. When either continues, the Link header gives the next
 * page of both (docs/http.md, "Pages").
 * @arg max_rows minimum=1 maximum=200
 * @returns {sent:[object], received:[object]}
 */
create function api.my_pair_invites(
    max_rows integer default 50, sent_after uuid default null, received_after uuid default null
) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    -- The caller first, then one query per list: on a Citus cluster the lists
    -- read every shard and the functions in them run on the workers, so the
    -- status is spelled out (as private.pair_invite_status) instead of called
    -- with the shard's row type.
    v_uid uuid := private.require_user();
    v_email text := (select pg_catalog.lower(u.email) from auth.users u where u.id = v_uid);
    v_now timestamptz := pg_catalog.now();
    v_limit integer := private.page_size(my_pair_invites.max_rows);
    v_sent_after timestamptz;
    v_received_after timestamptz;
    v_sent jsonb;
    v_received jsonb;
    v_next text[] := '{}';
    v_event uuid;
begin
    if my_pair_invites.sent_after is not null then
        -- Its event first, in a statement of its own (on a cluster a function
        -- called inside the query would run on a shard).
        v_event := private.pair_invite_event(my_pair_invites.sent_after);
        select f.created_at into v_sent_after from app.pair_invites f
        where f.event_id = v_event
          and f.id = my_pair_invites.sent_after and f.inviter_id = v_uid;
        if not found then
            perform private.page_cursor_unknown('sent_after');
        end if;
    end if;
    if my_pair_invites.received_after is not null then
        -- Its event first, in a statement of its own (on a cluster a function
        -- called inside the query would run on a shard).
        v_event := private.pair_invite_event(my_pair_invites.received_after);
        select f.created_at into v_received_after from app.pair_invites f
        where f.event_id = v_event
          and f.id = my_pair_invites.received_after
          and (f.invitee_id = v_uid or (v_email is not null and f.invitee_email = v_email));
        if not found then
            perform private.page_cursor_unknown('received_after');
        end if;
    end if;

    -- One index range each (pair_invites_inviter_order_idx; for received the
    -- two of invitee_id and invitee_email), one row more than the page.
    select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'id', i.id, 'event', pg_catalog.jsonb_build_object('id', e.id, 'title', e.title),
            'status', case when i.status = 'sent' and i.expires_at <= v_now then 'expired'
                           else i.status end,
            'short_code', i.short_code,
            'invitee_email', i.invitee_email, 'pair_id', i.pair_id,
            'expires_at', i.expires_at, 'reminded_at', i.reminded_at,
            'resends', i.resend_count, 'created_at', i.created_at,
            'accepted_at', i.accepted_at, 'declined_at', i.declined_at)
        order by i.created_at desc, i.id desc), '[]'::jsonb)
    into v_sent
    from (
        select * from app.pair_invites f
        where f.inviter_id = v_uid
          and (v_sent_after is null
               or (f.created_at, f.id) < (v_sent_after, my_pair_invites.sent_after))
        order by f.created_at desc, f.id desc
        limit v_limit + 1) i
    join app.events e on e.id = i.event_id;

    -- Two index lookups (invitee_id, invitee_email) as UNION ALL rather than one
    -- OR, which no single index serves; an invite that matches both comes from
    -- the first.
    select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'id', i.id, 'event', pg_catalog.jsonb_build_object('id', e.id, 'title', e.title),
            'status', case when i.status = 'sent' and i.expires_at <= v_now then 'expired'
                           else i.status end,
            'inviter', pg_catalog.jsonb_build_object('id', i.inviter_id, 'display_name', p.display_name),
            'pair_id', i.pair_id, 'expires_at', i.expires_at, 'reminded_at', i.reminded_at,
            'created_at', i.created_at,
            'accepted_at', i.accepted_at, 'declined_at', i.declined_at)
        order by i.created_at desc, i.id desc), '[]'::jsonb)
    into v_received
    from (
        select * from (
            (select * from app.pair_invites f
             where f.invitee_id = v_uid
               and (v_received_after is null
                    or (f.created_at, f.id) < (v_received_after, my_pair_invites.received_after))
             order by f.created_at desc, f.id desc
             limit v_limit + 1)
            union all
            (select * from app.pair_invites f
             where v_email is not null and f.invitee_email = v_email
               and f.invitee_id is distinct from v_uid
               and (v_received_after is null
                    or (f.created_at, f.id) < (v_received_after, my_pair_invites.received_after))
             order by f.created_at desc, f.id desc
             limit v_limit + 1)) u
        order by u.created_at desc, u.id desc
        limit v_limit + 1) i
    join app.events e on e.id = i.event_id
    join app.profiles p on p.id = i.inviter_id;

    -- The next page of both lists, when either continues: a list that ends is
    -- asked again after its last invite (an empty page).
    if pg_catalog.jsonb_array_length(v_sent) > v_limit
       or pg_catalog.jsonb_array_length(v_received) > v_limit then
        v_sent := v_sent - v_limit;
        v_received := v_received - v_limit;
        v_next := array['max_rows=' || v_limit::text];
        if coalesce(v_sent -> -1 ->> 'id', my_pair_invites.sent_after::text) is not null then
            v_next := v_next || ('sent_after='
                || coalesce(v_sent -> -1 ->> 'id', my_pair_invites.sent_after::text));
        end if;
        if coalesce(v_received -> -1 ->> 'id', my_pair_invites.received_after::text) is not null then
            v_next := v_next || ('received_after='
                || coalesce(v_received -> -1 ->> 'id', my_pair_invites.received_after::text));
        end if;
        perform private.next_page(pg_catalog.array_to_string(v_next, '&'));
    end if;
    return pg_catalog.jsonb_build_object('sent', v_sent, 'received', v_received);
end;
$$;
grant execute on function api.my_pair_invites(integer, uuid, uuid) to authenticated, service_role;
