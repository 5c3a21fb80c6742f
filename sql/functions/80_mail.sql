-- The mail outbox's worker side. Workers (python -m gateway mailer) connect as
-- the gateway's role, switch to service_role and, one message per transaction:
-- claim the oldest due message (FOR UPDATE SKIP LOCKED: two workers never hold
-- the same one), send it over SMTP, then mark it sent or failed before commit.

/**
 * The oldest due, unsent message, locked for this transaction; none when every
 * due message is held by another worker.
 */
create function private.mail_claim()
returns table (id uuid, to_email text, template text, data jsonb, attempts integer)
language sql volatile security definer
set search_path = ''
as $$
    select m.id, m.to_email, m.template, m.data, m.attempts
    from app.mail_outbox m
    where m.sent_at is null and m.send_after <= pg_catalog.now()
    order by m.send_after, m.id
    limit 1
    for update skip locked
$$;
grant execute on function private.mail_claim() to service_role;

/**
 * Marks a claimed message sent.
 */
create function private.mail_sent(id uuid) returns void
language sql volatile security definer
set search_path = ''
as $$
    update app.mail_outbox m set sent_at = pg_catalog.now(), attempts = m.attempts + 1,
        last_error = null
    where m.id = mail_sent.id
$$;
grant execute on function private.mail_sent(uuid) to service_role;

/**
 * Records a failed delivery and schedules the next try with exponential
 * backoff: 2^attempts seconds, at most max_backoff seconds.
 */
create function private.mail_failed(id uuid, error text, max_backoff integer default 300)
returns void
language sql volatile security definer
set search_path = ''
as $$
    update app.mail_outbox m
    set attempts = m.attempts + 1,
        last_error = pg_catalog.left(error, 500),
        send_after = pg_catalog.now() + pg_catalog.make_interval(
            secs => least(pg_catalog.power(2, least(m.attempts, 20)), greatest(max_backoff, 1)))
    where m.id = mail_failed.id
$$;
grant execute on function private.mail_failed(uuid, text, integer) to service_role;

/**
 * Messages waiting to be sent (for metrics and operators).
 */
create function private.mail_queue_depth() returns bigint
language sql stable security definer
set search_path = ''
as $$
    select pg_catalog.count(*) from app.mail_outbox m where m.sent_at is null
$$;
grant execute on function private.mail_queue_depth() to service_role;
