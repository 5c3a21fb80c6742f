"""The development account (`python -m gateway dev`) and the development sign-in
create users as Supabase Auth does: with an `id`, and without an ON CONFLICT that
needs a unique index on lower(email). So they work on the auth.users the
migrations make and on Supabase's (no default for `id`, a partial email index)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb
from test_supabase_compat import migrate, supabase_url  # noqa: F401  (fixture)

from gateway.__main__ import dev_user
from gateway.pages.devsignin import SIGN_UP_SQL


def accounts(url: str, email: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(url) as conn:
        return [(str(r[0]), r[1]) for r in conn.execute(
            "select u.id, p.display_name from auth.users u "
            "left join app.profiles p on p.id = u.id where lower(u.email) = %s", (email,))]


def test_dev_user_is_made_once(database_url: str) -> None:
    first = dev_user(database_url)
    assert dev_user(database_url) == first
    assert accounts(database_url, "dev@example.com") == [(first, "Dev")]


@pytest.mark.superuser("creates Supabase's roles and a database shaped as its own")
def test_dev_user_and_sign_up_on_supabase_auth_users(supabase_url: str) -> None:  # noqa: F811
    migrate(supabase_url)
    with psycopg.connect(supabase_url) as conn:
        index = conn.execute("select pg_get_indexdef('auth.users_email_partial_key'::regclass)"
                             ).fetchone()
        default = conn.execute(
            "select column_default from information_schema.columns "
            "where table_schema = 'auth' and table_name = 'users' and column_name = 'id'"
        ).fetchone()
    assert index == ("CREATE UNIQUE INDEX users_email_partial_key ON auth.users USING btree "
                     "(email) WHERE (is_sso_user = false)",)
    assert default == (None,)

    first = dev_user(supabase_url)
    assert dev_user(supabase_url) == first
    assert accounts(supabase_url, "dev@example.com") == [(first, "Dev")]

    with psycopg.connect(supabase_url, autocommit=True) as conn:
        made = conn.execute(SIGN_UP_SQL, {"email": "dana@example.com",
                                          "meta": Jsonb({"display_name": "Dana"})}).fetchall()
        again = conn.execute(SIGN_UP_SQL, {"email": "dana@example.com",
                                           "meta": Jsonb({})}).fetchall()
    assert len(made) == 1 and made == again
    assert made[0][1] == "dana@example.com"
    assert accounts(supabase_url, "dana@example.com") == [(made[0][0], "Dana")]
