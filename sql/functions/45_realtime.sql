-- Realtime messages: what the database publishes, sent at commit.
--
-- The gateway LISTENs on channel 'joinery_realtime' (gateway/realtime/hub.py) and
-- fans each message out by its topic. A transaction sends one NOTIFY, whatever it
-- publishes: an api function that may publish several messages (an approval: one
-- per member, one on the group, one on the authors' queue) opens a batch with
-- private.publish_batch_begin, private.publish adds to it, and
-- private.publish_batch_end sends it as one payload, a JSON array of the messages
-- in order. A NOTIFY carries less than 8000 bytes: a batch past that goes as
-- several arrays, each under the limit, in order. Outside a batch a message goes
-- alone, as a JSON object (what the gateway has always read). docs/realtime.md
-- and docs/choices.md say why.
--
-- The batch is a transaction-local setting (joinery.realtime_batch: '' when none
-- is open, else '[' and the messages so far, comma-separated), so it needs no
-- table, is gone at commit or rollback, and a rolled-back subtransaction takes
-- its messages with it.

/**
 * Opens the transaction's batch of realtime messages. True when this call opened
 * it: the caller then ends it with private.publish_batch_end(true) before it
 * returns. False when one is open already (a caller further up ends it).
 */
create function private.publish_batch_begin() returns boolean
language plpgsql volatile
set search_path = ''
as $$
begin
    if coalesce(pg_catalog.current_setting('joinery.realtime_batch', true), '') <> '' then
        return false;
    end if;
    perform pg_catalog.set_config('joinery.realtime_batch', '[', true);
    return true;
end;
$$;

/**
 * Ends the batch when `opened` (publish_batch_begin's answer): its messages go in
 * one NOTIFY on 'joinery_realtime', a JSON array, or, past the payload limit
 * (8000 bytes), in as few arrays as fit, in order. A single message that is
 * itself too long fails as pg_notify does. Returns the NOTIFYs sent.
 */
create function private.publish_batch_end(opened boolean) returns integer
language plpgsql volatile
set search_path = ''
as $$
declare
    -- PostgreSQL refuses a payload of 8000 bytes or more (default block size).
    c_limit constant integer := 7999;
    v_batch text := pg_catalog.current_setting('joinery.realtime_batch', true);
    v_chunk text := '';
    v_message text;
    v_sent integer := 0;
begin
    if not publish_batch_end.opened then
        return 0;
    end if;
    perform pg_catalog.set_config('joinery.realtime_batch', '', true);
    if coalesce(v_batch, '') in ('', '[') then
        return 0;
    end if;
    v_batch := v_batch || ']';
    if pg_catalog.octet_length(v_batch) <= c_limit then
        perform pg_catalog.pg_notify('joinery_realtime', v_batch);
        return 1;
    end if;
    for v_message in
        select m.value::text from pg_catalog.jsonb_array_elements(v_batch::jsonb) with ordinality m
        order by m.ordinality
    loop
        -- The payload with this message: '[' chunk ',' message ']'.
        if v_chunk <> ''
           and pg_catalog.octet_length(v_chunk) + pg_catalog.octet_length(v_message) + 3 > c_limit then
            perform pg_catalog.pg_notify('joinery_realtime', '[' || v_chunk || ']');
            v_sent := v_sent + 1;
            v_chunk := '';
        end if;
        v_chunk := case when v_chunk = '' then v_message else v_chunk || ',' || v_message end;
    end loop;
    perform pg_catalog.pg_notify('joinery_realtime', '[' || v_chunk || ']');
    return v_sent + 1;
end;
$$;

/**
 * Publishes a small realtime message on `topic` (delivered at commit, if any):
 * into the open batch (private.publish_batch_begin), or else alone, in a NOTIFY
 * of its own. The message gets its topic as `topic`.
 *
 * On a Supabase database, where realtime.send exists (Supabase Realtime 2.33 and
 * later), the same message also goes to Supabase's Realtime server as a private
 * broadcast, in this transaction: event = the message's type, payload = the
 * message (the data SSE streams carry). Whether realtime.send exists is decided
 * when sql/ is rebuilt, not on each call: this function is made in one of two
 * forms, with a static call of realtime.send or without. `migrate` records which
 * (in the comment of schema api) and rebuilds sql/ when that changes, so a
 * database where Supabase Realtime is installed (or removed) after migrate needs
 * `migrate` run again.
 */
do $publish$
begin
    execute pg_catalog.format($function$
create or replace function private.publish(topic text, message jsonb) returns void
language plpgsql volatile
set search_path = ''
as $body$
declare
    v_message jsonb := publish.message || pg_catalog.jsonb_build_object('topic', publish.topic);
    v_batch text := pg_catalog.current_setting('joinery.realtime_batch', true);
begin
    %s
    if coalesce(v_batch, '') = '' then
        perform pg_catalog.pg_notify('joinery_realtime', v_message::text);
    else
        perform pg_catalog.set_config('joinery.realtime_batch',
            v_batch || case v_batch when '[' then '' else ',' end || v_message::text, true);
    end if;
end;
$body$
$function$,
        case when pg_catalog.to_regprocedure('realtime.send(jsonb, text, text, boolean)') is not null
             then 'perform realtime.send(v_message, v_message ->> ''type'', publish.topic, true);'
             else '-- realtime.send did not exist when sql/ was rebuilt'
        end);
end
$publish$;
