-- Pair invitations (seed flow 3): creating one, joining and previewing it by
-- code, revoking, listing. Accepting and declining are in 72_pair_answers.sql.
--
-- Counted attempts (create, join by code) never raise when refused: they set
-- response.status and return the error body, so the rate-limit hit and the
-- audit entry commit.

/**
 * The status as reported: 'expired' once expires_at has passed for an open invite.
 */
create function private.pair_invite_status(i app.pair_invites) returns text
language plpgsql stable
set search_path = ''
as $$
begin
    return case when i.status = 'sent' and i.expires_at <= pg_catalog.now() then 'expired'
                else i.status end;
end;
$$;

/**
 * True when `email` is exactly one plain address, local@domain: at most 254
 * characters, a local part of at most 64 of letters, digits and
 * .#$&'*+/=?^_`{|}~- (no leading, trailing or double dot), a domain of at
 * least two dot-separated labels of letters, digits and inner hyphens (at most
 * 63 each). No commas, second @, angle brackets, quotes, spaces, CR/LF or other
 * control characters: the address is the message's one envelope recipient.
 */
create function private.is_single_email(email text) returns boolean
language plpgsql immutable
set search_path = ''
as $$
begin
    return coalesce(
        pg_catalog.length(email) <= 254
        and pg_catalog.length(pg_catalog.split_part(email, '@', 1)) <= 64
        and email ~ ('^[A-Za-z0-9#$&''*+/=?^_`{|}~-]+(\.[A-Za-z0-9#$&''*+/=?^_`{|}~-]+)*'
                     '@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
                     '(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$'),
        false);
end;
$$;

/**
 * Invites a partner to register as a pair, by email or by sharing the short
 * code. The event must be open and before its deadline (400), with two seats
 * free (409), and the inviter not registered yet (409). A new invite revokes
 * the inviter's previous open invite for the event. The email, when given,
 * must be exactly one plain address (400, see private.is_single_email). A
 * message holding the short code is queued in the outbox in this transaction,
 * unless the address stopped invitations or got its share of invitation mail
 * (private.queue_invite_mail); the answer is the same either way, and the same
 * whether or not the address has an account. Lifetime 7
 * days, never past the registration deadline. Returns {id, short_code,
 * expires_at}; tokens are never returned here.
 * @arg invitee_email maxLength=254 pattern=^(?=[^@]{1,64}@)[A-Za-z0-9#$&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9#$&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$
 * @returns {id:uuid, short_code:string, expires_at:date-time}
 * @link join_pair_invite code=short_code
 * @link preview_pair_invite code=short_code
 * @link revoke_pair_invite invite_id=id
 * @link resend_pair_invite invite_id=id
 * @link answer_pair_invite invite_id=id
 */
create function api.create_pair_invite(event_id uuid, invitee_email text default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limited jsonb := private.rate_limited('create_invite', 'pair_invite.create',
                                            create_pair_invite.event_id);
    v_event app.events;
    v_email text := nullif(pg_catalog.btrim(create_pair_invite.invitee_email), '');
    v_reason text;
    v_code text;
    v_invite app.pair_invites;
    v_revoked record;
begin
    if v_limited is not null then
        return v_limited;
    end if;
    if v_email is not null and not private.is_single_email(v_email) then
        return private.refuse('pair_invite.create', 400, 'invalid',
            'invitee_email is not a valid email address.',
            subject_id => create_pair_invite.event_id, details => 'invitee_email');
    end if;
    -- No lock on the event: an invite takes no seat, so the checks below are a
    -- courtesy that accept_pair_invite repeats under its locks (deadline, two
    -- free seats, neither person registered). Only the inviter's own open invite
    -- is locked, and only invites are locked here, so the lock order is the
    -- accept's (invite, then event) and an invite creation never waits for a
    -- registration or a like of the event, nor they for it. Two creations by one
    -- inviter are serialised by the rate limiter's per-user lock and the partial
    -- unique index pair_invites_one_open_per_inviter.
    select * into v_event from app.events e where e.id = create_pair_invite.event_id;
    if not found then
        return private.refuse('pair_invite.create', 404, 'not_found', 'Event not found.',
            subject_id => create_pair_invite.event_id);
    end if;
    v_reason := private.registration_closed_reason(v_event);
    if v_reason is not null then
        return private.refuse('pair_invite.create', 400, v_reason,
            'Registration for this event is closed.', subject_id => v_event.id);
    end if;
    if v_event.capacity is not null and v_event.capacity - v_event.seats_taken < 2 then
        return private.refuse('pair_invite.create', 409, 'full',
            'The event does not have two free seats.', subject_id => v_event.id);
    end if;
    -- The inviter's open invite first: an accept of it in flight holds it, and
    -- once that commits the registration check below (a new snapshot) sees it.
    -- A refusal must not revoke, so the lock comes before the check.
    perform from app.pair_invites i
    where i.event_id = v_event.id and i.inviter_id = v_uid and i.status = 'sent'
    for update;
    if exists (select from app.registrations r
               where r.event_id = v_event.id and r.user_id = v_uid and r.status = 'confirmed') then
        return private.refuse('pair_invite.create', 409, 'already_registered',
            'You are already registered for this event.', subject_id => v_event.id);
    end if;

    -- The invites first, then an event for each (see cancel_registration).
    for v_revoked in
        select i.id, i.event_id, i.inviter_id from app.pair_invites i
        where i.event_id = v_event.id and i.inviter_id = v_uid and i.status = 'sent'
    loop
        perform private.webhook_event('pair_invite.revoked', pg_catalog.jsonb_build_object('invite_id', v_revoked.id, 'event_id', v_revoked.event_id, 'inviter_id', v_revoked.inviter_id));
    end loop;
    update app.pair_invites i set status = 'revoked', revoked_at = pg_catalog.now(),
        updated_at = pg_catalog.now()
    where i.event_id = v_event.id and i.inviter_id = v_uid and i.status = 'sent';
    for v_try in 1 .. 5 loop
        -- The code's route (app.pair_code_routes, keyed by the code) claims it
        -- cluster-wide; a code already routed (about one in 10^11) is skipped
        -- and another drawn, at most 5 times. Every invite has its route
        -- (written with it, never deleted; migration 0040 wrote the older
        -- ones), so a code whose route was just claimed is in no invite: the
        -- insert below cannot break pair_invites_short_code_key and needs no
        -- exception block (which would open a subtransaction on every call).
        -- Any unique violation there is raised as it is (409), never retried.
        -- On a Citus cluster that constraint is per event (it must include the
        -- distribution column); the route is what makes a code unique.
        v_code := private.new_short_code();
        insert into app.pair_code_routes (short_code, event_id) values (v_code, v_event.id)
        on conflict do nothing;
        continue when not found;
        insert into app.pair_invites (event_id, inviter_id, invitee_email, short_code, expires_at,
                                      locale)
        values (v_event.id, v_uid, pg_catalog.lower(v_email), v_code,
                least(pg_catalog.now() + interval '7 days',
                      coalesce(v_event.registration_deadline, 'infinity')),
                private.inviter_locale(v_uid))
        returning * into v_invite;
        exit;
    end loop;
    if v_invite.id is null then
        raise exception using errcode = 'PT503', message = 'No free short code was found; try again.';
    end if;
    if v_email is not null then
        -- Queued or not (the recipient may have stopped invitations or reached
        -- the per-address limit), the answer and the audit entry are the same.
        -- No user-written text goes into the message.
        perform private.queue_invite_mail(v_invite.invitee_email, 'pair_invite',
            private.pair_invite_mail_data(v_invite));
    end if;
    perform private.audit('pair_invite.create', 'created', 200, v_invite.id,
        pg_catalog.jsonb_build_object('event_id', v_event.id, 'emailed', v_email is not null));
    perform private.webhook_event('pair_invite.sent', pg_catalog.jsonb_build_object('invite_id', v_invite.id, 'event_id', v_event.id, 'inviter_id', v_uid, 'expires_at', v_invite.expires_at), pg_catalog.jsonb_build_object('invitee_email', v_invite.invitee_email));
    return pg_catalog.jsonb_build_object(
        'id', v_invite.id, 'short_code', v_invite.short_code, 'expires_at', v_invite.expires_at);
end;
$$;
grant execute on function api.create_pair_invite(uuid, text) to authenticated, service_role;

/**
 * The open invite a short code names (status sent, not expired), or null. The
 * one lookup behind join_pair_invite and preview_pair_invite.
 */
create function private.open_pair_invite(code text) returns app.pair_invites
language plpgsql stable
set search_path = ''
as $$
declare
    v_invite app.pair_invites;
    v_code text := private.normalize_short_code(open_pair_invite.code);
    v_event_id uuid;
begin
    -- The code's route names its event (one shard on a cluster), then the
    -- invite is read on the event's shard: two statements, since a cluster
    -- cannot route a query by the result of a subquery.
    select r.event_id into v_event_id from app.pair_code_routes r where r.short_code = v_code;
    select * into v_invite from app.pair_invites i
    where i.event_id = v_event_id
      and i.short_code = v_code
      and i.status = 'sent' and i.expires_at > pg_catalog.now();
    return v_invite;
end;
$$;

/**
 * The opening of a counted call with a short code (join_pair_invite,
 * preview_pair_invite): the caller (401 for anon, raised), one 'join_code'
 * rate-limit hit audited as `action` (429), the open invite the code names
 * (private.open_pair_invite), else one generic 404 for an unknown, expired,
 * revoked or answered code. Returns the caller, the invite (not locked) and
 * `refusal`: the answered error body (audited as `action`), or null when the
 * call may go on. It and private.start_pair_token_call are alike in shape but
 * not one helper: the bucket, the lookup (an open invite by code, read; an
 * invite by token, locked) and the token's own 403 differ, and one helper
 * would take all three as options.
 */
create function private.start_pair_code_call(
    code text, action text, out caller uuid, out invite app.pair_invites, out refusal jsonb
)
language plpgsql volatile
set search_path = ''
as $$
begin
    caller := private.require_user();
    refusal := private.rate_limited('join_code', action);
    if refusal is not null then
        return;
    end if;
    invite := private.open_pair_invite(code);
    if invite.id is null then
        refusal := private.refuse(action, 404, 'not_found', 'No open invitation with this code.');
    end if;
end;
$$;

/**
 * Exchanges a short code for a token to accept or decline with:
 * {token, event: {id, title}, inviter: {display_name}, expires_at}. An unknown,
 * expired, revoked or already answered code gets one generic 404. Each call
 * issues a new token (stored only as its hash). Counted as 'join_code'.
 * @arg code pattern=^[\s-]*([2-9A-HJKMNP-Za-hjkmnp-z][\s-]*){8}$
 * @returns {token:string, event:{id:uuid, title:string}, inviter:{display_name:string}, expires_at:date-time}
 * @link accept_pair_invite token=token
 * @link decline_pair_invite token=token
 */
create function api.join_pair_invite(code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_call record := private.start_pair_code_call(join_pair_invite.code, 'pair_invite.join');
    v_invite app.pair_invites := v_call.invite;
    v_token text;
begin
    if v_call.refusal is not null then
        return v_call.refusal;
    end if;
    v_token := pg_catalog.translate(pg_catalog.encode(private.random_bytes(32), 'base64'), '+/=', '-_');
    insert into app.pair_invite_tokens (token_hash, invite_id, issued_to, event_id)
    values (private.hash_secret(v_token), v_invite.id, v_call.caller, v_invite.event_id);
    -- The token's route to its event, in the same transaction (see
    -- private.pair_token_event).
    insert into app.pair_token_routes (token_hash, event_id)
    values (private.hash_secret(v_token), v_invite.event_id);
    perform private.audit('pair_invite.join', 'token_issued', 200, v_invite.id);
    return (
        select pg_catalog.jsonb_build_object(
            'token', v_token,
            'event', pg_catalog.jsonb_build_object('id', e.id, 'title', e.title),
            'inviter', pg_catalog.jsonb_build_object('display_name', p.display_name),
            'expires_at', v_invite.expires_at)
        from app.events e, app.profiles p
        where e.id = v_invite.event_id and p.id = v_invite.inviter_id);
end;
$$;
grant execute on function api.join_pair_invite(text) to authenticated, service_role;

/**
 * What the page behind an invitation link shows before anyone clicks:
 * {event: {id, title, registration_deadline}, inviter: {display_name},
 * expires_at, own_invite}. Unlike join_pair_invite it issues no token and
 * changes no invite, so opening a link (a person or a mail scanner) answers
 * nothing. A preview records what any attempt with a code records: one
 * 'join_code' rate-limit hit and one audit entry ('pair_invite.preview',
 * outcome 'shown' or the refusal). Unknown, expired, revoked or answered
 * codes get join_pair_invite's generic 404.
 * @arg code pattern=^[\s-]*([2-9A-HJKMNP-Za-hjkmnp-z][\s-]*){8}$
 * @returns {event:{id:uuid, title:string, registration_deadline:string?}, inviter:{display_name:string?}, expires_at:date-time, own_invite:boolean}
 */
create function api.preview_pair_invite(code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_call record := private.start_pair_code_call(preview_pair_invite.code, 'pair_invite.preview');
    v_invite app.pair_invites := v_call.invite;
begin
    if v_call.refusal is not null then
        return v_call.refusal;
    end if;
    perform private.audit('pair_invite.preview', 'shown', 200, v_invite.id);
    -- Alike join_pair_invite's answer in shape, kept apart: the two read
    -- different fields (no token here; the deadline and own_invite), and one
    -- helper would take both shapes as options.
    return (
        select pg_catalog.jsonb_build_object(
            'event', pg_catalog.jsonb_build_object(
                'id', e.id, 'title', e.title, 'registration_deadline', e.registration_deadline),
            'inviter', pg_catalog.jsonb_build_object('display_name', p.display_name),
            'expires_at', v_invite.expires_at,
            'own_invite', v_invite.inviter_id = v_call.caller)
        from app.events e, app.profiles p
        where e.id = v_invite.event_id and p.id = v_invite.inviter_id);
end;
$$;
grant execute on function api.preview_pair_invite(text) to authenticated, service_role;

/**
 * The inviter revokes their invite. Only an open invite changes; revoking
 * twice changes nothing. Returns {id, status}. Someone else's invite gets the
 * same 404 as an unknown id (the audit tells them apart), so the answer shows
 * nothing about invites that are not the caller's. Every attempt is counted
 * ('revoke_invite', as revoke_group_invite) and audited; refusals are
 * answered, not raised, so both commit.
 * @returns {id:uuid, status:sent|accepted|declined|revoked|expired}
 */
create function api.revoke_pair_invite(invite_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limited jsonb := private.rate_limited('revoke_invite', 'pair_invite.revoke');
    v_invite app.pair_invites;
begin
    if v_limited is not null then
        return v_limited;
    end if;
    -- The caller is checked before anything is locked, on a plain read
    -- (private.read_pair_invite). Then the lock, naming the event
    -- (private.lock_event_pair_invite).
    v_invite := private.read_pair_invite(revoke_pair_invite.invite_id);
    if v_invite.id is null then
        return private.refuse('pair_invite.revoke', 404, 'not_found', 'Invitation not found.');
    end if;
    if v_invite.inviter_id <> v_uid then
        -- The same answer as for an unknown id; the audit tells them apart.
        return private.refuse('pair_invite.revoke', 404, 'not_allowed', 'Invitation not found.',
            subject_id => v_invite.id, details => 'not_found');
    end if;
    v_invite := private.lock_event_pair_invite(v_invite.event_id, v_invite.id);
    if v_invite.id is null then
        -- Deleted (with its event) since it was read.
        return private.refuse('pair_invite.revoke', 404, 'not_found', 'Invitation not found.');
    end if;
    if v_invite.status = 'sent' then
        update app.pair_invites i set status = 'revoked', revoked_at = pg_catalog.now(),
            updated_at = pg_catalog.now()
        where i.event_id = v_invite.event_id and i.id = v_invite.id
        returning * into v_invite;
        perform private.webhook_event('pair_invite.revoked', pg_catalog.jsonb_build_object('invite_id', v_invite.id, 'event_id', v_invite.event_id, 'inviter_id', v_invite.inviter_id));
        perform private.audit('pair_invite.revoke', 'revoked', 200, v_invite.id);
    else
        perform private.audit('pair_invite.revoke', 'unchanged', 200, v_invite.id);
    end if;
    return pg_catalog.jsonb_build_object('id', v_invite.id, 'status', private.pair_invite_status(v_invite));
end;
$$;
grant execute on function api.revoke_pair_invite(uuid) to authenticated, service_role;
