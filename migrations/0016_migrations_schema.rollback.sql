-- Back where the previous release's yoyo looks for its tables: in public (with
-- RLS on, and no grants, as they are now), and schema joinery_migrations dropped,
-- so that yoyo's current schema is public again.
do $back$
declare
    v_table text;
begin
    foreach v_table in array array['_yoyo_log', '_yoyo_migration', '_yoyo_version', 'yoyo_lock']
    loop
        if pg_catalog.to_regclass('joinery_migrations.' || pg_catalog.quote_ident(v_table)) is not null
           and pg_catalog.to_regclass('public.' || pg_catalog.quote_ident(v_table)) is null then
            execute pg_catalog.format('alter table joinery_migrations.%I set schema public', v_table);
        end if;
    end loop;
end
$back$;
drop schema if exists joinery_migrations;
