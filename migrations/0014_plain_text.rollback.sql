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
            v_check.tbl, v_check.name, v_check.col,
            '[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]');
    end loop;
end
$constraints$;
drop function app.strip_control_chars(text);
drop function app.has_control_chars(text);
drop function app.control_chars_pattern();
