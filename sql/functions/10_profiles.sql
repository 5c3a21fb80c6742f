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
 * The caller's own profile: {id, email, display_name, locale, created_at};
 * locale ('en' or 'ca') is null until the person chooses one.
 * @returns {id:uuid, email:string?, display_name:string, locale:en|ca?, created_at:date-time}
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
        'id', p.id, 'email', u.email, 'display_name', p.display_name, 'locale', p.locale,
        'created_at', p.created_at)
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
 * Changes the caller's profile: display_name (1 to 80 characters after
 * trimming, no control characters such as line breaks, tabs or bidirectional
 * overrides: 400) and/or locale, the language of the mail they get ('en' or
 * 'ca', else 400). An argument left null keeps its value; giving neither is
 * 400. One function with defaults, so update_profile(display_name) and
 * update_profile(locale) are both the same overload. Returns me().
 * @arg display_name minLength=1 maxLength=80 pattern=^[^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]*[^\x20\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069][^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$
 * @arg locale enum=en,ca
 * @body minProperties=1
 * @returns {id:uuid, email:string?, display_name:string, locale:en|ca?, created_at:date-time}
 */
create function api.update_profile(display_name text default null, locale text default null)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_user();
    v_name text;
begin
    if update_profile.display_name is null and update_profile.locale is null then
        raise exception using errcode = '22023', message = 'Give display_name or locale.';
    end if;
    if update_profile.display_name is not null then
        v_name := private.plain_name(update_profile.display_name, 'display_name', 80);
    end if;
    if update_profile.locale is not null and update_profile.locale not in ('en', 'ca') then
        raise exception using errcode = '22023', message = 'locale must be ''en'' or ''ca''.';
    end if;
    update app.profiles p
    set display_name = coalesce(v_name, p.display_name),
        locale = coalesce(update_profile.locale, p.locale),
        updated_at = pg_catalog.now()
    where p.id = v_uid;
    if not found then
        raise exception using errcode = 'PT404', message = 'No profile for this account.';
    end if;
    return api.me();
end;
$$;
grant execute on function api.update_profile(text, text) to authenticated, service_role;
