-- Pages of lists (docs/http.md, "Pages"): the size, the cursor, the Link header.

/**
 * The size of one page of a list (docs/http.md, "Pages"): max_rows, 1 to 200;
 * null means the default, 50. Anything else is a 400 (22023), as PostgREST
 * answers an argument it cannot use.
 */
create function private.page_size(max_rows integer) returns integer
language plpgsql immutable
set search_path = ''
as $$
begin
    if max_rows is null then
        return 50;
    end if;
    if max_rows not between 1 and 200 then
        raise exception using errcode = '22023', message = 'max_rows must be 1 to 200.',
            hint = 'Ask for 1 to 200 rows; the default is 50.';
    end if;
    return max_rows;
end;
$$;

/**
 * The unknown cursor of a list: `after` names no item of the caller's list (it
 * was never in it, or it has left it since). 400 (22023).
 */
create function private.page_cursor_unknown(argument text) returns void
language plpgsql immutable
set search_path = ''
as $$
begin
    raise exception using errcode = '22023',
        message = argument || ' is not the id of an item of this list.',
        hint = 'Pass the id of the last item of the previous page, or nothing for the first page.';
end;
$$;

/**
 * One page of a list, fetched with one row more than asked for: trims that row
 * and, when there was one, says so in the Link header (RFC 8288):
 * `<?QUERY&max_rows=N&after=ID>; rel="next"`, ID being the id of the page's
 * last item (the `id_key` of the items) and QUERY the arguments that name the
 * list (`group_id=...`; none for the caller's own lists). Returns the page.
 */
create function private.page(items jsonb, max_rows integer, id_key text default 'id',
                             query text default null)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
    v_items jsonb := coalesce(items, '[]'::jsonb);
begin
    if pg_catalog.jsonb_array_length(v_items) <= max_rows then
        return v_items;
    end if;
    v_items := v_items - max_rows;
    perform private.next_page(pg_catalog.concat_ws('&', query, pg_catalog.format(
        'max_rows=%s&after=%s', max_rows, v_items -> (max_rows - 1) ->> id_key)));
    return v_items;
end;
$$;

/**
 * Sets the Link header of a list that continues: `<?QUERY>; rel="next"`.
 */
create function private.next_page(query text) returns void
language plpgsql volatile
set search_path = ''
as $$
begin
    perform pg_catalog.set_config('response.headers', pg_catalog.jsonb_build_array(
        pg_catalog.jsonb_build_object('Link', '<?' || query || '>; rel="next"'))::text, true);
end;
$$;
