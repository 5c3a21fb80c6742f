"""Plans of the hot lists on a loaded table: 40,000 pair invites, of which the
caller's are two. auto_explain, sent to this connection, shows the plan of every
statement run inside the function; none may read app.pair_invites whole."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from conftest import User

LOAD = """
insert into app.pair_invites (event_id, inviter_id, invitee_email, short_code, status,
                              expires_at, revoked_at)
select %(event)s, %(inviter)s, 'someone-' || n || '@example.com',
       (select string_agg(substr('23456789ABCDEFGHJKMNPQRSTUVWXYZ',
                                 1 + floor(random() * 31)::int, 1), '')
        from generate_series(1, 8 + 0 * n)),
       'revoked', now() + interval '1 day', now()
from generate_series(1, 40000) n
"""


def plans(conn: psycopg.Connection, user: User, query: str) -> list[str]:
    """The plans of every statement `query` runs, as `user`."""
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    conn.execute("load 'auto_explain'")
    conn.execute("set local auto_explain.log_min_duration = 0")
    conn.execute("set local auto_explain.log_nested_statements = on")
    conn.execute("set local client_min_messages = log")
    conn.execute("set local role authenticated")
    conn.execute("select set_config('request.jwt.claims', %s, true)",
                 (json.dumps({"sub": user.id, "role": "authenticated"}),))
    conn.execute(query)  # type: ignore[arg-type]
    conn.execute("reset role")
    return seen


def test_my_pair_invites_reads_no_whole_table(
        database_url: str, make_user: Callable[[], User]) -> None:
    creator, inviter, invitee = make_user(), make_user(), make_user()
    with psycopg.connect(database_url) as conn:  # one transaction, rolled back
        (event,) = conn.execute(
            "insert into app.events (title, creator_id) values ('Loaded', %s) returning id",
            (creator.id,)).fetchone() or (None,)
        conn.execute(LOAD, {"event": event, "inviter": creator.id})
        conn.execute(
            "insert into app.pair_invites (event_id, inviter_id, invitee_email, short_code, "
            "expires_at) values (%s, %s, lower(%s), 'MNPQ2345', now() + interval '1 day')",
            (event, inviter.id, invitee.email))
        conn.execute("analyze app.pair_invites")
        found = plans(conn, invitee, "select api.my_pair_invites()")
        answer = conn.execute("select api.my_pair_invites()").fetchone()
        conn.rollback()
    shown = [p for p in found if "app.pair_invites" in p or "pair_invites i" in p]
    assert shown, found  # auto_explain did show the function's statements
    assert not [p for p in found if "Seq Scan on pair_invites" in p], "\n\n".join(found)
    assert answer is not None
