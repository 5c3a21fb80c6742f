-- Pair invitations (seed flow 3): accepting and declining by the invite's token.
-- Accepting registers both people with one pair_id in one transaction.
--
-- Counted attempts (accept, decline) never raise when refused: they set
-- response.status and return the error body, so the rate-limit hit and the
-- audit entry commit.

/**
 * The event a pair-invite token was issued for, or null: read from its route
 * (app.pair_token_routes, written by join_pair_invite), which a Citus cluster
 * distributes by the token's hash, so this reads one shard.
 */
create function private.pair_token_event(token text) returns uuid
language plpgsql stable
set search_path = ''
as $$
begin
    return (select r.event_id from app.pair_token_routes r
            where r.token_hash = private.hash_secret(coalesce(token, '')));
end;
$$;

/**
 * The invite a token was issued for, locked; null when the token is unknown.
 */
create function private.lock_invite_by_token(token text) returns app.pair_invites
language plpgsql volatile
set search_path = ''
as $$
declare
    v_invite_id uuid;
    v_event_id uuid;
    v_invite app.pair_invites;
begin
    -- The token names its invite and event; the lock names the event too (on a
    -- Citus cluster, the distribution column of both tables).
    v_event_id := private.pair_token_event(token);
    select t.invite_id into v_invite_id from app.pair_invite_tokens t
    where t.event_id = v_event_id and t.token_hash = private.hash_secret(coalesce(token, ''));
    select i.* into v_invite from app.pair_invites i
    where i.event_id = v_event_id and i.id = v_invite_id
    for update;
    return v_invite;
end;
$$;

/**
 * Whom a pair-invite token was issued to (join_pair_invite's caller), or null.
 */
create function private.pair_token_issued_to(token text) returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
    -- Read first (its route): a query a cluster routes names its event as a value.
    v_event_id uuid := private.pair_token_event(token);
begin
    return (select t.issued_to from app.pair_invite_tokens t
            where t.event_id = v_event_id
              and t.token_hash = private.hash_secret(coalesce(token, '')));
end;
$$;

/**
 * The opening of a counted answer by token (accept_pair_invite,
 * decline_pair_invite): the caller (401 for anon, raised), one
 * 'respond_invite' rate-limit hit audited as `action` (429), the token's invite
 * locked (private.lock_invite_by_token: the lookup, then the lock naming the
 * event), a known token (404) issued to the caller (by join_pair_invite; 403
 * otherwise). Returns the caller, the locked invite and `refusal`: the answered
 * error body (audited as `action`, nothing written but the hit and the entry),
 * or null when the call may go on.
 */
create function private.start_pair_token_call(
    token text, action text, out caller uuid, out invite app.pair_invites, out refusal jsonb
)
language plpgsql volatile
set search_path = ''
as $$
begin
    caller := private.require_user();
    refusal := private.rate_limited('respond_invite', action);
    if refusal is not null then
        return;
    end if;
    invite := private.lock_invite_by_token(token);
    if invite.id is null then
        refusal := private.refuse(action, 404, 'not_found', 'No invitation for this token.');
    elsif private.pair_token_issued_to(token) is distinct from caller then
        refusal := private.refuse(action, 403, 'not_issued_to_caller',
            'This token was issued to someone else.', subject_id => invite.id);
    end if;
end;
$$;

/**
 * The account's email address, lower case, when it is confirmed; else null
 * (no such account, or no address). On Supabase, whose auth.users has
 * email_confirmed_at, an address never confirmed is no one's: anyone may sign
 * up with any address. The column is looked for in the row (to_jsonb), not
 * named, so the function works on both schemas of auth.users; a column added
 * later is seen at once.
 */
create function private.confirmed_email(user_id uuid) returns text
language plpgsql stable
set search_path = ''
as $$
declare
    v_user jsonb;
begin
    select pg_catalog.to_jsonb(u) into v_user from auth.users u where u.id = confirmed_email.user_id;
    if v_user is null
       or (v_user ? 'email_confirmed_at' and v_user ->> 'email_confirmed_at' is null) then
        return null;
    end if;
    return pg_catalog.lower(v_user ->> 'email');
end;
$$;

/**
 * Why the caller may not answer this invite (as an error body), or null:
 * the inviter cannot (403), nor anyone but the addressee of an emailed invite
 * (403): the caller's account address, confirmed (private.confirmed_email),
 * must be the invite's.
 */
create function private.pair_invite_answer_refusal(i app.pair_invites, caller uuid) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
    if i.inviter_id = caller then
        return pg_catalog.jsonb_build_object('status', 403, 'reason', 'own_invite',
            'message', 'You cannot answer your own invitation.');
    end if;
    if i.invitee_email is not null
       and private.confirmed_email(caller) is distinct from i.invitee_email then
        return pg_catalog.jsonb_build_object('status', 403, 'reason', 'other_addressee',
            'message', 'This invitation was sent to another email address.');
    end if;
    return null;
end;
$$;

/**
 * The refusals every answer to a locked invite shares, answered through
 * private.refuse as `action` (the audit entry names the invite), or null: the
 * inviter, or anyone but the addressee of an emailed invite, 403
 * (private.pair_invite_answer_refusal); the invite no longer open, 410 with
 * its status as the reason (declined, revoked, expired, or accepted by someone
 * else). Called by accept_locked_pair_invite and decline_locked_pair_invite
 * after their own "answered again" check, before they write anything.
 */
create function private.refuse_pair_answer(invite app.pair_invites, caller uuid, action text)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
    v_refusal jsonb := private.pair_invite_answer_refusal(invite, caller);
    v_status text;
begin
    if v_refusal is not null then
        return private.refuse(action, 403, v_refusal ->> 'reason',
            v_refusal ->> 'message', subject_id => invite.id);
    end if;
    v_status := private.pair_invite_status(invite);
    if v_status <> 'sent' then
        return private.refuse(action, 410, v_status,
            pg_catalog.format('This invitation is %s.', v_status), subject_id => invite.id);
    end if;
    return null;
end;
$$;

/**
 * {pair_id, event_id, registrations: [{user_id, status}]} of an accepted invite.
 */
create function private.pair_result(i app.pair_invites) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
    return pg_catalog.jsonb_build_object(
        'pair_id', i.pair_id, 'event_id', i.event_id,
        'registrations', (
            select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                    'user_id', r.user_id, 'status', r.status)
                order by r.user_id = i.inviter_id desc, r.user_id), '[]'::jsonb)
            from app.registrations r where r.event_id = i.event_id and r.pair_id = i.pair_id));
end;
$$;

/**
 * Every rule of accepting, for a locked invite and its would-be partner
 * `v_uid`, after the caller was identified (by a token, or by the address on
 * their token for answer_pair_invite): accepting again returns the same
 * result; the inviter, or anyone but the addressee of an emailed invite, 403;
 * the invite still open (410: declined, revoked, expired, or accepted by
 * someone else); the event open and before its deadline (410 after the
 * deadline, 400 closed); neither person registered (409); two seats free
 * (409). Registers both (one pair_id) and audits as `action`.
 */
create function private.accept_locked_pair_invite(invite app.pair_invites, caller uuid, action text)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
    v_invite app.pair_invites := accept_locked_pair_invite.invite;
    v_uid uuid := accept_locked_pair_invite.caller;
    v_event app.events;
    v_refusal jsonb;
    v_reason text;
    v_pair uuid := pg_catalog.gen_random_uuid();
    v_reg record;
begin
    if v_invite.status = 'accepted' and v_invite.invitee_id = v_uid then
        perform private.audit(action, 'already_accepted', 200, v_invite.id);
        return private.pair_result(v_invite);
    end if;
    v_refusal := private.refuse_pair_answer(v_invite, v_uid, action);
    if v_refusal is not null then
        return v_refusal;
    end if;

    -- Lock order everywhere: the invite, then the event. The event's lock is the
    -- seat counter's (take_seats' UPDATE takes the same one): FOR NO KEY UPDATE,
    -- which foreign-key checks (KEY SHARE) of likes, invites and authors of the
    -- event do not wait for. Accepts and registrations of one event are serialised.
    select * into v_event from app.events e where e.id = v_invite.event_id for no key update;
    v_reason := private.registration_closed_reason(v_event);
    if v_reason is not null then
        return private.refuse(action,
            case v_reason when 'deadline' then 410 else 400 end, v_reason,
            'Registration for this event is closed.', subject_id => v_invite.id);
    end if;
    if exists (select from app.registrations r
               where r.event_id = v_event.id and r.status = 'confirmed'
                 and r.user_id in (v_uid, v_invite.inviter_id)) then
        return private.refuse(action, 409, 'already_registered',
            'One of you is already registered for this event.', subject_id => v_invite.id);
    end if;
    if not private.take_seats(v_event.id, 2) then
        return private.refuse(action, 409, 'full',
            'The event does not have two free seats.', subject_id => v_invite.id);
    end if;
    insert into app.registrations (event_id, user_id, pair_id)
    values (v_event.id, v_invite.inviter_id, v_pair), (v_event.id, v_uid, v_pair);
    update app.pair_invites i
    set status = 'accepted', invitee_id = v_uid, pair_id = v_pair,
        accepted_at = pg_catalog.now(), updated_at = pg_catalog.now()
    where i.event_id = v_invite.event_id and i.id = v_invite.id
    returning * into v_invite;
    perform private.audit(action, 'accepted', 200, v_invite.id,
        pg_catalog.jsonb_build_object('event_id', v_event.id, 'pair_id', v_pair));
    perform private.webhook_event('pair_invite.accepted', pg_catalog.jsonb_build_object('invite_id', v_invite.id, 'event_id', v_event.id, 'inviter_id', v_invite.inviter_id, 'invitee_id', v_uid, 'pair_id', v_pair));
    -- The two registrations first, then an event for each (see cancel_registration).
    for v_reg in
        select r.id, r.event_id, r.user_id, r.pair_id from app.registrations r
        where r.event_id = v_event.id and r.pair_id = v_pair
    loop
        perform private.webhook_event('registration.confirmed', pg_catalog.jsonb_build_object('registration_id', v_reg.id, 'event_id', v_reg.event_id, 'user_id', v_reg.user_id, 'pair_id', v_reg.pair_id));
    end loop;
    return private.pair_result(v_invite);
end;
$$;

/**
 * Accepts a pair invite: both people are registered (confirmed, one pair_id)
 * in this transaction. Checks: a known token (404) issued to the caller
 * (by join_pair_invite; 403 otherwise), the invite still open
 * (410: declined, revoked, expired, or accepted by someone else), the caller
 * not the inviter and, for an emailed invite, the addressee (403), the event
 * open and before its deadline (410 after the deadline, 400 closed), neither
 * person registered (409), two seats free (409). Accepting again returns the
 * same result. Counted as 'respond_invite'.
 * @arg token pattern=^[A-Za-z0-9_-]{43}$
 * @returns {pair_id:uuid, event_id:uuid, registrations:[{user_id:uuid, status:confirmed|cancelled}]}
 */
create function api.accept_pair_invite(token text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_call record := private.start_pair_token_call(accept_pair_invite.token, 'pair_invite.accept');
begin
    if v_call.refusal is not null then
        return v_call.refusal;
    end if;
    return private.accept_locked_pair_invite(v_call.invite, v_call.caller, 'pair_invite.accept');
end;
$$;
grant execute on function api.accept_pair_invite(text) to authenticated, service_role;

/**
 * Every rule of declining, for a locked invite and the caller: declining again
 * answers the same; the inviter, or anyone but the addressee of an emailed
 * invite, 403; the invite still open (410). Returns {id, status}; audits as
 * `action`. Shared by decline_pair_invite and answer_pair_invite.
 */
create function private.decline_locked_pair_invite(invite app.pair_invites, caller uuid, action text)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
    v_invite app.pair_invites := decline_locked_pair_invite.invite;
    v_uid uuid := decline_locked_pair_invite.caller;
    v_refusal jsonb;
begin
    if v_invite.status = 'declined' and v_invite.invitee_id = v_uid then
        perform private.audit(action, 'already_declined', 200, v_invite.id);
        return pg_catalog.jsonb_build_object('id', v_invite.id, 'status', 'declined');
    end if;
    v_refusal := private.refuse_pair_answer(v_invite, v_uid, action);
    if v_refusal is not null then
        return v_refusal;
    end if;
    update app.pair_invites i
    set status = 'declined', invitee_id = v_uid, declined_at = pg_catalog.now(),
        updated_at = pg_catalog.now()
    where i.event_id = v_invite.event_id and i.id = v_invite.id;
    perform private.audit(action, 'declined', 200, v_invite.id);
    perform private.webhook_event('pair_invite.declined', pg_catalog.jsonb_build_object('invite_id', v_invite.id, 'event_id', v_invite.event_id, 'inviter_id', v_invite.inviter_id, 'invitee_id', v_uid));
    return pg_catalog.jsonb_build_object('id', v_invite.id, 'status', 'declined');
end;
$$;

/**
 * Declines a pair invite; nobody is registered. Same checks as accepting for
 * who may answer (the token's holder, not the inviter, the addressee: 403) and
 * whether the invite is open (404, 410). Declining
 * again answers the same. Returns {id, status}. Counted as 'respond_invite'.
 * @arg token pattern=^[A-Za-z0-9_-]{43}$
 */
create function api.decline_pair_invite(token text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_call record := private.start_pair_token_call(decline_pair_invite.token, 'pair_invite.decline');
begin
    if v_call.refusal is not null then
        return v_call.refusal;
    end if;
    return private.decline_locked_pair_invite(v_call.invite, v_call.caller, 'pair_invite.decline');
end;
$$;
grant execute on function api.decline_pair_invite(text) to authenticated, service_role;
