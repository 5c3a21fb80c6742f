-- Address aliases (issue 18): the stop list and the per-recipient mail limit
-- compare addresses in one canonical form, app.canonical_email, so that
-- `victim+1@...` and `v.ictim@gmail.com` are the addresses they alias. The
-- function lives here, beside the table and index that use it, not in sql/
-- (whose rebuild drops every function of api and private with what depends on it).
-- depends: 0012_stop_limits

/**
 * The canonical form of an email address, for comparing addresses (never for
 * sending): trimmed and lower-cased, the local part cut at its first `+` (a
 * tag), and for gmail.com and googlemail.com (one mailbox under both names, shown
 * as gmail.com) the dots of the local part removed. A value without `@` is
 * only trimmed and lower-cased.
 */
create function app.canonical_email(email text) returns text
language plpgsql immutable strict parallel safe
set search_path = ''
as $$
declare
    v_email text := pg_catalog.lower(pg_catalog.btrim(email));
    v_at integer := pg_catalog.strpos(pg_catalog.reverse(v_email), '@');
    v_local text;
    v_domain text;
begin
    if v_at = 0 then
        return v_email;
    end if;
    v_local := pg_catalog.split_part(
        pg_catalog.left(v_email, pg_catalog.length(v_email) - v_at), '+', 1);
    v_domain := pg_catalog.right(v_email, v_at - 1);
    if v_domain in ('gmail.com', 'googlemail.com') then
        v_domain := 'gmail.com';
        v_local := pg_catalog.replace(v_local, '.', '');
    end if;
    return v_local || '@' || v_domain;
end;
$$;
revoke execute on function app.canonical_email(text) from public;

-- The stop list holds canonical forms: stops already made are brought to theirs
-- (the earliest stop of an address's aliases gives its date).
insert into app.mail_stops as t (email, created_at)
select app.canonical_email(s.email), min(s.created_at) from app.mail_stops s group by 1
on conflict (email) do update set created_at = least(t.created_at, excluded.created_at);
delete from app.mail_stops s where s.email <> app.canonical_email(s.email);
alter table app.mail_stops add constraint mail_stops_email_canonical
    check (email = app.canonical_email(email));

-- Messages by the canonical form of their recipient: counting per address
-- (aliases together) and cancelling on a stop, old messages included.
create index mail_outbox_recipient_created_at_idx
    on app.mail_outbox (app.canonical_email(to_email), created_at);
drop index app.mail_outbox_to_email_created_at_idx;
