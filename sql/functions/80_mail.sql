-- The mail outbox's worker side. Workers (python -m gateway mailer) connect as
-- the gateway's role, switch to service_role and lease a message: claim it
-- (locked_until = now() + 5 minutes, FOR UPDATE SKIP LOCKED so two workers never
-- lease the same one) in one short transaction, send it over SMTP with no
-- transaction open, then mark it sent or failed in another. A message whose
-- lease ran out (its worker died) is claimed again: at least once delivery.

/**
 * Leases the oldest due, unsent message for five minutes (far longer than one
 * delivery: each SMTP step of the worker times out after 10 s): no other
 * worker claims it until it is marked sent or failed, or the lease runs out.
 * None when every due message is leased or locked by another worker.
 */
create function private.mail_claim()
returns table (id uuid, to_email text, template text, data jsonb, attempts integer)
language sql volatile security definer
set search_path = ''
as $$
    update app.mail_outbox m
    set locked_until = pg_catalog.now() + interval '5 minutes'
    where m.id = (
        select d.id
        from app.mail_outbox d
        where d.sent_at is null and d.cancelled_at is null and d.failed_at is null
          and d.send_after <= pg_catalog.now()
          and (d.locked_until is null or d.locked_until <= pg_catalog.now())
        order by d.send_after, d.id
        limit 1
        for update skip locked
    )
    returning m.id, m.to_email, m.template, m.data, m.attempts
$$;
grant execute on function private.mail_claim() to service_role;

/**
 * Marks a claimed message sent and ends its lease.
 */
create function private.mail_sent(id uuid) returns void
language sql volatile security definer
set search_path = ''
as $$
    update app.mail_outbox m set sent_at = pg_catalog.now(), attempts = m.attempts + 1,
        last_error = null, locked_until = null
    where m.id = mail_sent.id
$$;
grant execute on function private.mail_sent(uuid) to service_role;

/**
 * Records a failed delivery and schedules the next try with exponential
 * backoff: 2^attempts seconds, at most max_backoff seconds. After
 * max_attempts tries, or at once when the failure is permanent (a message
 * that can never be built or sent), the message is marked failed and never
 * tried again.
 */
create function private.mail_failed(
    id uuid, error text, max_backoff integer default 300, max_attempts integer default 8,
    permanent boolean default false
) returns void
language sql volatile security definer
set search_path = ''
as $$
    update app.mail_outbox m
    set attempts = m.attempts + 1,
        last_error = pg_catalog.left(error, 500),
        locked_until = null,
        failed_at = case when permanent or m.attempts + 1 >= greatest(max_attempts, 1)
                         then pg_catalog.now() end,
        send_after = pg_catalog.now() + pg_catalog.make_interval(
            secs => least(pg_catalog.power(2, least(m.attempts, 20)), greatest(max_backoff, 1)))
    where m.id = mail_failed.id
$$;
grant execute on function private.mail_failed(uuid, text, integer, integer, boolean)
    to service_role;

/**
 * Messages given up on (marked failed), for metrics and operators.
 */
create function private.mail_failed_count() returns bigint
language sql stable security definer
set search_path = ''
as $$
    select pg_catalog.count(*) from app.mail_outbox m where m.failed_at is not null
$$;
grant execute on function private.mail_failed_count() to service_role;

/**
 * Messages waiting to be sent (for metrics and operators).
 */
create function private.mail_queue_depth() returns bigint
language sql stable security definer
set search_path = ''
as $$
    select pg_catalog.count(*) from app.mail_outbox m
    where m.sent_at is null and m.cancelled_at is null and m.failed_at is null
$$;
grant execute on function private.mail_queue_depth() to service_role;

-- Stopping invitations: every invitation message carries a link
-- ({APP_URL}/invite/stop?token=...) whose token stands for its recipient
-- address. Following it stops all further invitation mail to that address;
-- invites to it are still created and their short codes still work.

/**
 * Serialises everything that decides about mail to one address (queueing,
 * stopping) for the rest of the transaction: one lock for all its aliases
 * (app.canonical_email).
 */
create function private.lock_mail_recipient(email text) returns void
language plpgsql volatile
set search_path = ''
as $$
begin
    perform pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended('mail_recipient/' || app.canonical_email(email), 0));
end;
$$;

/**
 * Queues an invitation message to `email` unless its recipient stopped
 * invitations or already got the most invitation messages the 'invite_mail'
 * limit allows in its window (app.rate_limits: per address, from all inviters
 * together; counted under the address's lock, so concurrent inviters cannot
 * overrun it). Both compare canonical forms (app.canonical_email: case, `+tag`,
 * Gmail's dots), so an alias of a stopped or used-up address is too. Returns
 * whether it was queued; callers must not let the answer show it (the inviter
 * learns nothing about the address).
 */
create function private.queue_invite_mail(email text, template text, data jsonb)
returns boolean
language plpgsql volatile
set search_path = ''
as $$
declare
    v_email text := pg_catalog.lower(email);
    v_recipient text := app.canonical_email(email);
    v_limit app.rate_limits;
begin
    perform private.lock_mail_recipient(v_email);
    if exists (select from app.mail_stops s where s.email = v_recipient) then
        return false;
    end if;
    select * into v_limit from app.rate_limits l where l.bucket = 'invite_mail';
    if found and (
        select pg_catalog.count(*) from app.mail_outbox m
        where app.canonical_email(m.to_email) = v_recipient
          and m.template = queue_invite_mail.template
          and m.created_at > pg_catalog.now() - pg_catalog.make_interval(secs => v_limit.window_seconds)
    ) >= v_limit.max_attempts then
        return false;
    end if;
    insert into app.mail_outbox (to_email, template, data)
    values (v_email, queue_invite_mail.template, queue_invite_mail.data);
    perform pg_catalog.pg_notify('joinery_mail', '');
    return true;
end;
$$;

/**
 * A new stop token for a message to `email`, for the worker to put in the
 * message's stop link; only its SHA-256 is kept. The token is made as the
 * message is sent, so no plain token is ever stored.
 */
create function private.mail_stop_token(email text) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_token text := pg_catalog.translate(
        pg_catalog.encode(private.random_bytes(32), 'base64'), '+/=', '-_');
begin
    insert into app.mail_stop_tokens (token_hash, email)
    values (private.hash_secret(v_token), pg_catalog.lower(mail_stop_token.email));
    return v_token;
end;
$$;
grant execute on function private.mail_stop_token(text) to service_role;

/**
 * Stops invitation mail to the address a stop link was sent to: no invitation
 * message is sent to it from now on, including those already queued. Invites
 * to it are still created, and their short codes still work. Anyone holding
 * the link may use it, signed in or not. Returns {stopped: true}, also when
 * the address (or an alias of it, see app.canonical_email) was stopped already
 * (a repeat writes nothing); 404 for an unknown token. Calls are counted per
 * client address ('stop_client', when the gateway gave one) and per token
 * ('stop_token'); over either limit, 429, its refusals audited once per window
 * and client address (else per token). Answered, not raised, so the counts
 * commit.
 */
create function api.stop_invitations(token text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_hash bytea := private.hash_secret(coalesce(stop_invitations.token, ''));
    v_client uuid := private.client_key(private.request_client_addr());
    v_token_key uuid := pg_catalog.encode(pg_catalog.substr(v_hash, 1, 16), 'hex')::uuid;
    v_limited jsonb;
    v_email text;
begin
    if v_client is not null then
        v_limited := private.rate_limited('stop_client', 'mail.stop', null, v_client);
        if v_limited is not null then
            return v_limited;
        end if;
    end if;
    select t.email into v_email from app.mail_stop_tokens t where t.token_hash = v_hash;
    if not found then
        return private.fail(404, 'This link is not valid.');
    end if;
    v_limited := private.rate_limited('stop_token', 'mail.stop', null, v_token_key,
        coalesce(v_client, v_token_key));
    if v_limited is not null then
        return v_limited;
    end if;
    -- The stop holds for every alias of the address (app.canonical_email).
    v_email := app.canonical_email(v_email);
    perform private.lock_mail_recipient(v_email);
    if exists (select from app.mail_stops s where s.email = v_email) then
        return pg_catalog.jsonb_build_object('stopped', true);
    end if;
    insert into app.mail_stops (email) values (v_email);
    update app.mail_outbox m set cancelled_at = pg_catalog.now()
    where app.canonical_email(m.to_email) = v_email
      and m.sent_at is null and m.cancelled_at is null;
    perform private.audit('mail.stop', 'stopped', 200);
    return pg_catalog.jsonb_build_object('stopped', true);
end;
$$;
grant execute on function api.stop_invitations(text) to anon, authenticated, service_role;
