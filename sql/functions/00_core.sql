-- Core helpers every flow uses: who is calling, errors that commit, the audit
-- log and the rate limiter. None of these is part of the API.
--
-- search_path: every function sets it to '' and qualifies every name, the
-- helpers in `private` that are not definers too (Supabase's linter, rule 0011,
-- flags any function without a fixed path; so does gateway/tools/lint.py).
-- A SET clause keeps PostgreSQL from inlining a SQL function: it would then be
-- parsed and planned again in every transaction that calls it. So helpers are
-- plpgsql, whose plans are cached per session and whose one-expression bodies
-- are evaluated without the executor (bench/README.md has the measured cost).

/**
 * The signed-in caller's id, or an error when there is none. Every api
 * function that needs a user starts here, so identity is read in one place.
 */
create function private.require_user() returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
    v_uid uuid := auth.uid();
begin
    if v_uid is null then
        raise exception using errcode = 'PT401', message = 'You must be signed in.';
    end if;
    return v_uid;
end;
$$;

/**
 * SHA-256 of a secret (invite codes, tokens). Secrets are random with at least
 * 122 bits, so an unsalted fast hash is enough and lets us look them up by index.
 */
create function private.hash_secret(secret text) returns bytea
language plpgsql immutable strict parallel safe
set search_path = ''
as $$
begin
    return pg_catalog.sha256(pg_catalog.convert_to(secret, 'UTF8'));
end;
$$;

/**
 * Answers an error without raising, PostgREST's way: sets response.status and
 * returns the error body {code, message, details, hint}, so the transaction
 * commits. Used where a failed attempt must still be counted and audited
 * (joins, invites, accepts). The code is the one a raised error of that status
 * would carry (docs/http.md, "Errors"): 42501 for a refusal of privilege (403),
 * else PT followed by the status, where no SQLSTATE says it.
 */
create function private.fail(
    status integer, message text, details text default null, hint text default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
    perform pg_catalog.set_config('response.status', status::text, true);
    return pg_catalog.jsonb_build_object(
        'code', case when status = 403 then '42501' else 'PT' || status::text end,
        'message', message, 'details', details, 'hint', hint);
end;
$$;

/**
 * A refused attempt, audited and answered in one step: an audit entry with the
 * reason as its outcome, and the error body with the reason in `details`
 * (answered by private.fail, so the entry commits). `details`, when given,
 * answers something else than the audited reason: the argument at fault, or
 * the reason the caller may see where the audit log keeps the real one (a
 * 404 that hides a 403). `audit_details`, when given, is the audit entry's
 * details (what the log keeps beside the subject, e.g. join_group's group_id);
 * the caller never sees it.
 */
create function private.refuse(
    action text, status integer, reason text, message text,
    subject_id uuid default null, hint text default null, details text default null,
    audit_details jsonb default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
    perform private.audit(action, reason, status, subject_id, audit_details);
    return private.fail(status, message, coalesce(details, reason), hint);
end;
$$;

/**
 * Appends one entry to the audit log for the current caller. Never stores
 * codes or tokens: callers pass ids and outcomes only.
 */
create function private.audit(
    action text, outcome text, status integer,
    subject_id uuid default null, details jsonb default '{}'::jsonb
) returns void
language plpgsql volatile
set search_path = ''
as $$
declare
    v_uid uuid := auth.uid();
begin
    -- actor_key: the actor, or a random id for an entry without one; on a Citus
    -- cluster the distribution column (migration 0041), so the entry is written
    -- on the actor's shard.
    insert into app.audit_log (actor_id, actor_key, action, outcome, status, subject_id, details)
    values (v_uid, coalesce(v_uid, pg_catalog.gen_random_uuid()), action, outcome, status,
            subject_id, coalesce(details, '{}'::jsonb));
end;
$$;

/**
 * True when a name or title holds a control character: C0, DEL, C1, line and
 * paragraph separators, and the format characters (Unicode category Cf:
 * zero-width spaces, bidirectional marks, overrides and isolates, the byte
 * order mark, ...). The characters are named once, in
 * app.control_chars_pattern() (migration 0014), which the tables' check
 * constraints use too.
 */
create function private.has_control_chars(value text) returns boolean
language plpgsql immutable
set search_path = ''
as $$
begin
    return app.has_control_chars(value);
end;
$$;

/**
 * A name or title as stored: `value` trimmed, checked once for every field
 * that holds one (a group's name, a display name, an event's title): 1 to
 * `max_length` characters after trimming, else 22023 (400) "<field> must be 1
 * to <max_length> characters."; no control character (private.has_control_chars),
 * else 22023 "<field> must not contain line breaks or other control characters."
 */
create function private.plain_name(value text, field text, max_length integer) returns text
language plpgsql immutable
set search_path = ''
as $$
declare
    v_name text := pg_catalog.btrim(value);
begin
    if v_name is null or pg_catalog.char_length(v_name) not between 1 and max_length then
        raise exception using errcode = '22023',
            message = pg_catalog.format('%s must be 1 to %s characters.', field, max_length);
    end if;
    if private.has_control_chars(v_name) then
        raise exception using errcode = '22023', message = pg_catalog.format(
            '%s must not contain line breaks or other control characters.', field);
    end if;
    return v_name;
end;
$$;

/**
 * Refuses changes to the audit log: it is append-only, for everyone. Only the
 * retention job (private.audit_prune, run by an operator) deletes old rows of
 * the default partition, with `joinery.audit_prune` set for its transaction.
 */
create function private.forbid_audit_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if tg_op = 'DELETE' and pg_catalog.current_setting('joinery.audit_prune', true) = 'on' then
        return old;
    end if;
    raise exception using errcode = '42501', message = 'The audit log is append-only.';
end;
$$;
create trigger audit_log_append_only
    before update or delete on app.audit_log
    for each row execute function private.forbid_audit_change();
create trigger audit_log_no_truncate
    before truncate on app.audit_log
    for each statement execute function private.forbid_audit_change();

/**
 * The client's address as the gateway saw it (`request.client_addr`, set per
 * request beside request.headers), or null when there is none: a direct SQL
 * caller, or a value that is not an address. Read here only. The one
 * exception block left in sql/functions (each opens a subtransaction): its one
 * caller, stop_invitations, is a link in a mail, not a hot call, and
 * PostgreSQL 15 has no pg_input_is_valid to check the text first.
 */
create function private.request_client_addr() returns inet
language plpgsql stable
set search_path = ''
as $$
declare
    v_text text := pg_catalog.current_setting('request.client_addr', true);
begin
    if v_text is null or v_text = '' then
        return null;
    end if;
    return v_text::inet;
exception when invalid_text_representation then
    return null;
end;
$$;

/**
 * The key the limiter counts a client address under (an IPv6 client by its
 * /64, which one subscriber usually holds whole; an IPv4 client seen through
 * a dual-stack socket, ::ffff:a.b.c.d, by its IPv4 address), or null for no
 * address.
 */
create function private.client_key(addr inet) returns uuid
language plpgsql immutable
set search_path = ''
as $$
declare
    v_addr inet := addr;
begin
    if v_addr is null then
        return null;
    end if;
    if pg_catalog.family(v_addr) = 6 and v_addr << '::ffff:0:0/96'::inet then
        v_addr := pg_catalog.regexp_replace(pg_catalog.host(v_addr), '^::ffff:', '', 'i')::inet;
    end if;
    return pg_catalog.md5('client/' || pg_catalog.host(
        case when pg_catalog.family(v_addr) = 6
             then pg_catalog.network(pg_catalog.set_masklen(v_addr, 64))::inet
             else v_addr end))::uuid;
end;
$$;

/**
 * Fixed-window rate limiter, one row per key and bucket in
 * app.rate_limit_counters, updated in place. Counts the caller's attempts in
 * `bucket` (the signed-in caller's, or those of `key` when given: a client
 * address or a token, see private.client_key) in a window of the bucket's
 * length (app.rate_limits) that opens with the first attempt counted after the
 * previous window closed. Returns 0 and counts the attempt when it is allowed;
 * otherwise returns the seconds until the window closes, at least 1 and at most
 * the window, and counts nothing. One INSERT ... ON CONFLICT DO UPDATE decides:
 * the row lock it takes (held to the end of the transaction) serialises the
 * attempts of one key, so the count cannot be overrun. A refused attempt
 * writes nothing (the DO UPDATE's WHERE is false, the row is locked all the
 * same) and reads when its window opened from the row it holds. Counters of
 * closed windows are deleted by private.rate_limit_prune, never here.
 */
create function private.rate_limit(bucket text, key uuid default null) returns integer
language plpgsql volatile
set search_path = ''
as $$
declare
    v_uid uuid := coalesce(key, private.require_user());
    v_limit app.rate_limits;
    -- Values, not now(): on a Citus cluster (where counters are distributed by
    -- user) DO UPDATE may not call a function that is not immutable.
    v_now timestamptz := pg_catalog.now();
    v_closed timestamptz;
    v_start timestamptz;
begin
    select * into v_limit from app.rate_limits l where l.bucket = rate_limit.bucket;
    if not found then
        raise exception using errcode = '22023', message = 'Unknown rate limit bucket ' || bucket;
    end if;
    -- A window that opened at or before this instant has closed.
    v_closed := v_now - pg_catalog.make_interval(secs => v_limit.window_seconds);
    insert into app.rate_limit_counters as c (user_id, bucket, window_start, hits)
    values (v_uid, rate_limit.bucket, v_now, 1)
    on conflict on constraint rate_limit_counters_pkey do update
    set window_start = case when c.window_start <= v_closed then v_now else c.window_start end,
        hits = case when c.window_start <= v_closed then 1 else c.hits + 1 end
    where c.window_start <= v_closed or c.hits < v_limit.max_attempts
    returning c.window_start into v_start;
    if found then
        return 0;
    end if;
    select c.window_start into v_start
    from app.rate_limit_counters c
    where c.user_id = v_uid and c.bucket = rate_limit.bucket;
    -- The window may have opened after this transaction's now(): one that
    -- started later took the row first. Its retry is then the whole window,
    -- never more.
    return least(v_limit.window_seconds, greatest(1,
        pg_catalog.ceil(extract(epoch from (v_start - v_closed)))::integer));
end;
$$;

/**
 * Deletes the rate-limit counters whose window has closed, each by its own
 * bucket's window (a 60 s counter a minute after it opened, not a day later);
 * returns how many. Run by `python -m gateway prune` beside the audit
 * retention, as the owner (granted to no one); the limiter itself never
 * deletes (on a Citus cluster a delete of anyone's counters reads every shard).
 */
create function private.rate_limit_prune() returns bigint
language plpgsql volatile
set search_path = ''
as $$
declare
    v_now timestamptz := pg_catalog.now();
    v_bucket app.rate_limits;
    v_deleted bigint;
    v_count bigint := 0;
begin
    -- A delete per bucket with a value as cutoff (Citus ships no stable function of a column).
    for v_bucket in select * from app.rate_limits l order by l.bucket loop
        delete from app.rate_limit_counters c
        where c.bucket = v_bucket.bucket
          and c.window_start <= v_now - pg_catalog.make_interval(secs => v_bucket.window_seconds);
        get diagnostics v_deleted = row_count;
        v_count := v_count + v_deleted;
    end loop;
    return v_count;
end;
$$;

/**
 * Audits a refused attempt without a row per attempt: one row per user (or per
 * `key`, such as a client address, when given), action, outcome and window (the
 * bucket's window, aligned to the epoch) in app.audit_refusals, counting the
 * refusals; the first refusal of a window also writes one audit_log entry.
 */
create function private.audit_refusal(
    action text, outcome text, status integer, window_seconds integer,
    subject_id uuid default null, key uuid default null
) returns void
language plpgsql volatile
set search_path = ''
as $$
declare
    v_uid uuid := coalesce(key, auth.uid());
    -- A value, not now(): on a Citus cluster (where refusals are distributed by
    -- actor) DO UPDATE SET may not call a function that is not immutable.
    v_now timestamptz := pg_catalog.now();
    v_first boolean;
begin
    if v_uid is null then
        perform private.audit(action, outcome, status, subject_id);
        return;
    end if;
    insert into app.audit_refusals as r (actor_id, action, outcome, window_start)
    values (v_uid, audit_refusal.action, audit_refusal.outcome, pg_catalog.to_timestamp(
        pg_catalog.floor(extract(epoch from pg_catalog.now()) / greatest(window_seconds, 1))
        * greatest(window_seconds, 1)))
    on conflict on constraint audit_refusals_pkey
    do update set refused = r.refused + 1, last_at = v_now
    returning r.refused = 1 into v_first;
    if v_first then
        perform private.audit(action, outcome, status, subject_id,
            pg_catalog.jsonb_build_object('counted_in', 'audit_refusals'));
    end if;
end;
$$;

/**
 * The gate of every counted attempt: counts it in `bucket` (the caller's, or
 * `key`'s, see private.rate_limit) and returns null, or, over the limit, audits
 * the refusal as `action` (counted per window and per `audit_key`, else per
 * `key`, else per caller: see private.audit_refusal) and returns the 429 answer
 * (Retry-After header, status, error body) for the caller to return.
 */
create function private.rate_limited(
    bucket text, action text, subject_id uuid default null,
    key uuid default null, audit_key uuid default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
    v_retry integer := private.rate_limit(bucket, key);
begin
    if v_retry = 0 then
        return null;
    end if;
    perform private.audit_refusal(action, 'rate_limited', 429,
        (select l.window_seconds from app.rate_limits l where l.bucket = rate_limited.bucket),
        subject_id, coalesce(audit_key, key));
    perform pg_catalog.set_config('response.headers',
        pg_catalog.jsonb_build_array(
            pg_catalog.jsonb_build_object('Retry-After', v_retry::text))::text,
        true);
    return private.fail(429, 'Too many attempts. Try again later.',
        pg_catalog.format('retry after %s seconds', v_retry), null);
end;
$$;
