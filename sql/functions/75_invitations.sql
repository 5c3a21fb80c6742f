-- Invitations beyond the first message (issue 21): mail in the reader's
-- language, resending, one reminder before expiry, answering in the app by the
-- address on the caller's token, and the authors' approval queue.
--
-- The rules of answering live once, in private.accept_locked_pair_invite and
-- private.decline_locked_pair_invite (72_pair_answers.sql): the token routes
-- and answer_pair_invite differ only in how they find the invite and its caller.

/**
 * The first language of the request's Accept-Language header (by q, then
 * order) that the mail speaks ('en' or 'ca'), or null. request.headers is set
 * by the gateway for every call.
 */
create function private.accept_language_locale() returns text
language plpgsql stable
set search_path = ''
as $$
declare
    v_header text := pg_catalog.left(coalesce(
        nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb
            ->> 'accept-language', ''), 512);
begin
    return (
        select x.tag
        from (
            select pg_catalog.lower(pg_catalog.split_part(pg_catalog.btrim(
                       pg_catalog.split_part(p.part, ';', 1)), '-', 1)) as tag,
                   coalesce(pg_catalog.substring(p.part, ';\s*q=([01](?:\.[0-9]{0,3})?)\s*$')::numeric,
                            1) as q,
                   p.ord
            from pg_catalog.regexp_split_to_table(v_header, ',') with ordinality as p(part, ord)
        ) x
        where x.tag in ('en', 'ca') and x.q > 0
        order by x.q desc, x.ord
        limit 1);
end;
$$;

/**
 * The inviter's language at the time of an invite: their request's
 * Accept-Language, else their profile's locale, else null.
 */
create function private.inviter_locale(inviter_id uuid) returns text
language plpgsql stable
set search_path = ''
as $$
begin
    return coalesce(private.accept_language_locale(),
        (select p.locale from app.profiles p where p.id = inviter_locale.inviter_id));
end;
$$;

/**
 * The language of a message to `email`: the profile's locale when the address
 * belongs to an account that chose one; else `fallback` (the inviter's
 * language at invite time); else English.
 */
create function private.mail_locale(email text, fallback text) returns text
language plpgsql stable
set search_path = ''
as $$
begin
    return coalesce(
        (select p.locale from auth.users u join app.profiles p on p.id = u.id
         where pg_catalog.lower(u.email) = pg_catalog.lower(mail_locale.email)),
        mail_locale.fallback, 'en');
end;
$$;

/**
 * What an invitation or reminder message needs: {invite_id, short_code,
 * expires_at, locale}. No user-written text (see the mail worker).
 */
create function private.pair_invite_mail_data(i app.pair_invites) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
    return pg_catalog.jsonb_build_object(
        'invite_id', i.id, 'short_code', i.short_code, 'expires_at', i.expires_at,
        'locale', private.mail_locale(i.invitee_email, i.locale));
end;
$$;

/**
 * The event of the pair invite `invite_id`, or null. Invites live with their
 * event (on a Citus cluster, the distribution column) and ids are not routed
 * (only short codes and tokens are, migration 0040): on a cluster this one
 * statement reads every shard, and every later read, lock and write of the
 * invite names the event it returns. Answering and resending by id are not
 * hot calls (docs/scaling.md, "Calls that read every shard").
 */
create function private.pair_invite_event(invite_id uuid) returns uuid
language plpgsql stable
set search_path = ''
as $$
begin
    return (select f.event_id from app.pair_invites f where f.id = pair_invite_event.invite_id);
end;
$$;

/**
 * The pair invite `invite_id` of event `event_id`, locked; null when there is
 * none. The lock names the event (see lock_invite_by_token).
 */
create function private.lock_event_pair_invite(event_id uuid, invite_id uuid)
returns app.pair_invites
language plpgsql volatile
set search_path = ''
as $$
declare
    v_invite app.pair_invites;
begin
    select * into v_invite from app.pair_invites i
    where i.event_id = lock_event_pair_invite.event_id and i.id = lock_event_pair_invite.invite_id
    for update;
    return v_invite;
end;
$$;

/**
 * The invite `invite_id` names, locked (its event first: see
 * lock_invite_by_token); null when there is none.
 */
create function private.lock_invite_by_id(invite_id uuid) returns app.pair_invites
language plpgsql volatile
set search_path = ''
as $$
declare
    -- The lookup is its own statement; the lock names the event as a value.
    v_event_id uuid := private.pair_invite_event(lock_invite_by_id.invite_id);
begin
    return private.lock_event_pair_invite(v_event_id, lock_invite_by_id.invite_id);
end;
$$;

/**
 * The pair invite `invite_id` names, read without a lock; null when there is
 * none. Its event is looked up first (private.pair_invite_event, a statement
 * of its own), and the read names it. revoke_pair_invite, resend_pair_invite
 * and answer_pair_invite check the caller on this read (an invite's inviter
 * and address never change) before they lock anything, so a stranger who knows
 * an id makes no row wait; then they lock through
 * private.lock_event_pair_invite. Each answers a caller it refuses in its own
 * way (revoke: the 404 of an unknown id; resend: 403 not the inviter; answer:
 * 403 not the addressee), so that check stays with them.
 */
create function private.read_pair_invite(invite_id uuid) returns app.pair_invites
language plpgsql stable
set search_path = ''
as $$
declare
    v_event_id uuid := private.pair_invite_event(read_pair_invite.invite_id);
    v_invite app.pair_invites;
begin
    select * into v_invite from app.pair_invites i
    where i.event_id = v_event_id and i.id = read_pair_invite.invite_id;
    return v_invite;
end;
$$;

/**
 * The inviter sends an emailed invitation again: the same code and expiry, at
 * most twice per invite (409 after that). 404 unknown, 403 not the inviter, 400
 * an invite made without an email, 410 not open (accepted, declined, revoked,
 * expired). The message counts toward the recipient's invitation-mail limit
 * and is not sent to a stopped address; the answer is the same either way.
 * Returns {id, resends, expires_at}. Counted as 'create_invite'.
 * @returns {id:uuid, resends:integer, expires_at:date-time}
 */
create function api.resend_pair_invite(invite_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_limited jsonb := private.rate_limited('create_invite', 'pair_invite.resend',
                                            resend_pair_invite.invite_id);
    v_invite app.pair_invites;
    v_status text;
begin
    if v_limited is not null then
        return v_limited;
    end if;
    -- The caller first, unlocked (private.read_pair_invite), so nobody else can
    -- make the invite wait; then the row lock, which serialises resends of one
    -- invite: the count cannot be overrun.
    v_invite := private.read_pair_invite(resend_pair_invite.invite_id);
    if v_invite.id is null then
        return private.refuse('pair_invite.resend', 404, 'not_found', 'Invitation not found.');
    end if;
    if v_invite.inviter_id <> v_uid then
        return private.refuse('pair_invite.resend', 403, 'not_inviter',
            'Only the inviter can send an invitation again.', subject_id => v_invite.id);
    end if;
    if v_invite.invitee_email is null then
        return private.refuse('pair_invite.resend', 400, 'no_email',
            'This invitation was not sent by email.', subject_id => v_invite.id);
    end if;
    v_invite := private.lock_event_pair_invite(v_invite.event_id, v_invite.id);
    v_status := private.pair_invite_status(v_invite);
    if v_status <> 'sent' then
        return private.refuse('pair_invite.resend', 410, v_status,
            pg_catalog.format('This invitation is %s.', v_status), subject_id => v_invite.id);
    end if;
    if v_invite.resend_count >= 2 then
        return private.refuse('pair_invite.resend', 409, 'resend_limit',
            'An invitation can be sent again at most twice.', subject_id => v_invite.id);
    end if;
    update app.pair_invites i
    set resend_count = i.resend_count + 1, updated_at = pg_catalog.now()
    where i.event_id = v_invite.event_id and i.id = v_invite.id
    returning * into v_invite;
    perform private.queue_invite_mail(v_invite.invitee_email, 'pair_invite',
        private.pair_invite_mail_data(v_invite));
    perform private.audit('pair_invite.resend', 'resent', 200, v_invite.id,
        pg_catalog.jsonb_build_object('resends', v_invite.resend_count));
    return pg_catalog.jsonb_build_object(
        'id', v_invite.id, 'resends', v_invite.resend_count, 'expires_at', v_invite.expires_at);
end;
$$;
grant execute on function api.resend_pair_invite(uuid) to authenticated, service_role;

/**
 * Queues the reminders that are due: one per emailed invite still `sent` whose
 * expiry is at most `before_seconds` away, made more than that long before its
 * expiry (a younger invite's first message is still fresh), never reminded
 * before. Each invite is locked FOR UPDATE SKIP LOCKED and marked reminded_at
 * in the transaction that queues its message, so workers running this at once
 * never remind twice (and a unique index allows one reminder message per
 * invite). A stopped address gets nothing (private.queue_invite_mail), but
 * the invite still counts as reminded. At most `batch` invites per call;
 * returns how many were handled. Called by the mail workers, as service_role.
 */
create function private.queue_due_reminders(before_seconds integer, batch integer default 100)
returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_before interval := pg_catalog.make_interval(secs => greatest(before_seconds, 0));
    v_due record;
    v_invite app.pair_invites;
    v_count integer := 0;
begin
    -- The due invites of every event (on a Citus cluster, every shard: a
    -- worker's sweep, not an API call), then each one by its event and id.
    for v_due in
        select i.event_id, i.id from app.pair_invites i
        where i.status = 'sent' and i.reminded_at is null and i.invitee_email is not null
          and i.expires_at > pg_catalog.now() and i.expires_at <= pg_catalog.now() + v_before
          and i.created_at < i.expires_at - v_before
        order by i.expires_at
        limit greatest(batch, 1)
    loop
        -- A fresh snapshot per statement: an invite another worker reminded and
        -- committed meanwhile no longer matches; one it holds is skipped.
        select * into v_invite from app.pair_invites i
        where i.event_id = v_due.event_id and i.id = v_due.id
          and i.status = 'sent' and i.reminded_at is null and i.expires_at > pg_catalog.now()
        for update skip locked;
        continue when not found;
        update app.pair_invites i set reminded_at = pg_catalog.now()
        where i.event_id = v_invite.event_id and i.id = v_invite.id;
        perform private.queue_invite_mail(v_invite.invitee_email, 'pair_invite_reminder',
            private.pair_invite_mail_data(v_invite));
        v_count := v_count + 1;
    end loop;
    return v_count;
end;
$$;
grant execute on function private.queue_due_reminders(integer, integer) to service_role;

/**
 * The caller's verified email address, lower case: the `email` claim of their
 * token, when it is their account's confirmed address
 * (private.confirmed_email); else null.
 */
create function private.caller_verified_email() returns text
language plpgsql stable
set search_path = ''
as $$
declare
    v_claim text := pg_catalog.lower(auth.jwt() ->> 'email');
begin
    if v_claim is null or private.confirmed_email(auth.uid()) is distinct from v_claim then
        return null;
    end if;
    return v_claim;
end;
$$;

/**
 * Answers, from the app, an invitation sent to the caller's email: accept
 * (both registered, as accept_pair_invite) or decline. The invite is found by
 * its id (404 unknown); only the addressee answers here: the verified address
 * on the caller's token must be the invite's (403 otherwise, and for invites
 * made without an email: those are answered with their code). Then every rule
 * of accept_pair_invite / decline_pair_invite applies, from the same code:
 * the inviter 403; not open 410 (declined, revoked, expired); the deadline
 * passed 410, closed 400; either person registered 409; two seats not free
 * 409. Answering again the same way returns the same result. Counted as
 * 'respond_invite'.
 */
create function api.answer_pair_invite(invite_id uuid, accept boolean) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_action text := case when answer_pair_invite.accept then 'pair_invite.accept'
                          else 'pair_invite.decline' end;
    v_limited jsonb := private.rate_limited('respond_invite', v_action, answer_pair_invite.invite_id);
    v_invite app.pair_invites;
begin
    if v_limited is not null then
        return v_limited;
    end if;
    if answer_pair_invite.accept is null then
        return private.refuse(v_action, 400, 'accept', 'accept must be true or false.');
    end if;
    -- Who may answer is checked before the invite is locked (its inviter and
    -- address never change), so nobody else can make it wait. Then the lock
    -- order of accept_pair_invite: the invite, then (in
    -- accept_locked_pair_invite) the event, FOR NO KEY UPDATE.
    v_invite := private.read_pair_invite(answer_pair_invite.invite_id);
    if v_invite.id is null then
        return private.refuse(v_action, 404, 'not_found', 'Invitation not found.');
    end if;
    if v_invite.inviter_id <> v_uid and (v_invite.invitee_email is null
            or private.caller_verified_email() is distinct from v_invite.invitee_email) then
        return private.refuse(v_action, 403, 'not_addressee',
            'This invitation was not sent to the verified email address of your account.',
            subject_id => v_invite.id);
    end if;
    v_invite := private.lock_event_pair_invite(v_invite.event_id, v_invite.id);
    if answer_pair_invite.accept then
        return private.accept_locked_pair_invite(v_invite, v_uid, v_action);
    end if;
    return private.decline_locked_pair_invite(v_invite, v_uid, v_action);
end;
$$;
grant execute on function api.answer_pair_invite(uuid, boolean) to authenticated, service_role;

/**
 * Tells the authors' approval queue of an event (topic 'event:{id}', see
 * api.can_subscribe) that a like group changed: {type: 'like_group_changed',
 * group_id, status}. Ids only; the page reads the rest through the API.
 */
create function private.publish_queue_change(event_id uuid, group_id uuid, status text)
returns void
language plpgsql volatile
set search_path = ''
as $$
begin
    perform private.publish('event:' || publish_queue_change.event_id::text,
        pg_catalog.jsonb_build_object('type', 'like_group_changed',
            'group_id', publish_queue_change.group_id, 'status', publish_queue_change.status));
end;
$$;
