-- Profiles: created for every new account, read and renamed by their owner.

/**
 * `value` with each run of control characters (private.has_control_chars),
 * with the spaces around it, made one space.
 */
create function private.strip_control_chars(value text) returns text
language plpgsql immutable
set search_path = ''
as $$
begin
    return app.strip_control_chars(value);
end;
$$;

/**
 * Trigger on auth.users: every new account gets a profile. The display name is
 * raw_user_meta_data->>'display_name', else the email's local part, with each
 * run of control characters made one space (an account is never refused here).
 */
create function private.handle_new_user() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    insert into app.profiles (id, display_name)
    values (
        new.id,
        pg_catalog.left(coalesce(
            nullif(pg_catalog.btrim(private.strip_control_chars(
                new.raw_user_meta_data ->> 'display_name')), ''),
            nullif(pg_catalog.btrim(private.strip_control_chars(
                pg_catalog.split_part(new.email, '@', 1))), ''),
            'user'), 80))
    on conflict (id) do nothing;
    return new;
end;
$$;
create trigger joinery_on_auth_user_created
    after insert on auth.users
    for each row execute function private.handle_new_user();

/**
 * The caller's own profile: {id, email, display_name, created_at}.
 */
create function api.me() returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_result jsonb;
begin
    select pg_catalog.jsonb_build_object(
        'id', p.id, 'email', u.email, 'display_name', p.display_name, 'created_at', p.created_at)
    into v_result
    from app.profiles p join auth.users u on u.id = p.id
    where p.id = v_uid;
    if v_result is null then
        raise exception using errcode = 'PT404', message = 'No profile for this account.';
    end if;
    return v_result;
end;
$$;
grant execute on function api.me() to authenticated, service_role;

/**
 * Renames the caller: 1 to 80 characters after trimming, no control
 * characters (line breaks, tabs, bidirectional overrides: 400).
 */
create function api.update_profile(display_name text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_name text := pg_catalog.btrim(update_profile.display_name);
begin
    if v_name is null or pg_catalog.char_length(v_name) not between 1 and 80 then
        raise exception using errcode = '22023', message = 'display_name must be 1 to 80 characters.';
    end if;
    if private.has_control_chars(v_name) then
        raise exception using errcode = '22023',
            message = 'display_name must not contain line breaks or other control characters.';
    end if;
    update app.profiles p set display_name = v_name, updated_at = pg_catalog.now()
    where p.id = v_uid;
    if not found then
        raise exception using errcode = 'PT404', message = 'No profile for this account.';
    end if;
    return api.me();
end;
$$;
grant execute on function api.update_profile(text) to authenticated, service_role;
