-- Names and titles (issue 18): the format characters (Unicode category Cf:
-- zero-width spaces, bidirectional marks, embeddings and isolates, the byte
-- order mark, invisible tags, ...) are refused as control characters are. The
-- characters are named once, in app.control_chars_pattern(), which the check
-- constraints (written from it here), the api functions and the cleaning of new
-- accounts' names all use.
-- depends: 0013_mail_aliases

/**
 * The pattern (a PostgreSQL regular expression) of what a name or title may
 * not hold: C0 and C1 controls, DEL, the line and paragraph separators, and
 * every format character (Unicode 15 category Cf) but the zero-width joiner
 * and non-joiner between two characters that are neither ASCII nor space,
 * where emoji sequences and Persian or Indic words need them. Next to
 * ASCII, a space or an end they are refused like the others.
 */
create function app.control_chars_pattern() returns text
language plpgsql immutable parallel safe
set search_path = ''
as $$
begin
    return '[\x01-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2'
        '\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb'
        '\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a'
        '\U000e0001\U000e0020-\U000e007f]'
        '|(?<![^\x01-\x7f\s])[\u200c\u200d]|[\u200c\u200d](?![^\x01-\x7f\s])';
end;
$$;
revoke execute on function app.control_chars_pattern() from public;

/**
 * True when `value` holds a character of app.control_chars_pattern().
 */
create function app.has_control_chars(value text) returns boolean
language plpgsql immutable parallel safe
set search_path = ''
as $$
begin
    return value ~ app.control_chars_pattern();
end;
$$;
revoke execute on function app.has_control_chars(text) from public;

/**
 * `value` with each run of such characters, with the spaces around it, made
 * one space.
 */
create function app.strip_control_chars(value text) returns text
language plpgsql immutable parallel safe
set search_path = ''
as $$
begin
    return pg_catalog.regexp_replace(value,
        '\s*(?:' || app.control_chars_pattern() || ')+\s*', ' ', 'g');
end;
$$;
revoke execute on function app.strip_control_chars(text) from public;

-- Existing values are cleaned first, as migration 0008 did.
update app.profiles p
set display_name = coalesce(nullif(pg_catalog.btrim(app.strip_control_chars(p.display_name)), ''), 'user')
where app.has_control_chars(p.display_name);
update app.groups g
set name = coalesce(nullif(pg_catalog.btrim(app.strip_control_chars(g.name)), ''), 'group')
where app.has_control_chars(g.name);
update app.events e
set title = coalesce(nullif(pg_catalog.btrim(app.strip_control_chars(e.title)), ''), 'event')
where app.has_control_chars(e.title);

-- The constraints hold the pattern itself (no function of ours: on a Citus
-- cluster they are checked on the workers' shards).
do $constraints$
declare
    v_check record;
begin
    for v_check in
        select * from (values ('profiles', 'profiles_display_name_plain', 'display_name'),
                              ('groups', 'groups_name_plain', 'name'),
                              ('events', 'events_title_plain', 'title')) c(tbl, name, col)
    loop
        execute pg_catalog.format('alter table app.%I drop constraint %I', v_check.tbl, v_check.name);
        execute pg_catalog.format('alter table app.%I add constraint %I check (%I !~ %L)',
            v_check.tbl, v_check.name, v_check.col, app.control_chars_pattern());
    end loop;
end
$constraints$;
