-- yoyo's own tables (_yoyo_log, _yoyo_migration, _yoyo_version, yoyo_lock) live
-- in schema joinery_migrations, which no API role may use. In `public` they were
-- readable and deletable through any REST API that exposes `public` (Supabase's
-- does, with default privileges for anon and authenticated).
--
-- yoyo keeps its tables in the connection's current schema: `make migrate` and
-- the URL in yoyo.ini's advice name it (`?schema=joinery_migrations,public`).
-- `make migrate` also runs this file before yoyo starts, so yoyo finds its
-- tables where it keeps them from now on; a plain `yoyo apply` on an older
-- install moves them here. It changes nothing when run again.
-- depends: 0015_invitee_email_index

do $move$
declare
    v_table text;
    v_role text;
begin
    if pg_catalog.current_setting('search_path') !~ '(^|[ ,])"?joinery_migrations"?($|[ ,])' then
        raise exception 'yoyo must keep its tables in schema joinery_migrations'
            using hint = 'Add ?schema=joinery_migrations,public to the --database URL '
                         '(see yoyo.ini), or run `make migrate`.';
    end if;
    create schema if not exists joinery_migrations;
    revoke all on schema joinery_migrations from public;
    foreach v_table in array array['_yoyo_log', '_yoyo_migration', '_yoyo_version', 'yoyo_lock']
    loop
        if pg_catalog.to_regclass('public.' || pg_catalog.quote_ident(v_table)) is not null
           and pg_catalog.to_regclass('joinery_migrations.' || pg_catalog.quote_ident(v_table)) is null then
            execute pg_catalog.format('alter table public.%I set schema joinery_migrations', v_table);
        end if;
        if pg_catalog.to_regclass('joinery_migrations.' || pg_catalog.quote_ident(v_table)) is not null then
            -- Only the migrating role (the owner) reads and writes them.
            execute pg_catalog.format('alter table joinery_migrations.%I enable row level security',
                                      v_table);
            execute pg_catalog.format('revoke all on joinery_migrations.%I from public', v_table);
            for v_role in select r.rolname from pg_catalog.pg_roles r
                          where r.rolname in ('anon', 'authenticated', 'service_role', 'authenticator')
            loop
                execute pg_catalog.format('revoke all on joinery_migrations.%I from %I',
                                          v_table, v_role);
            end loop;
        end if;
    end loop;
end
$move$;
