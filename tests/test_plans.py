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


# Each list's table loaded with 20,000 to 40,000 rows of someone else's and 60 of
# the caller's (more than one page of 50): every read is an index range.
LISTS_LOAD = [
    """insert into app.groups (name, creator_id, member_count)
       select 'Other ' || n, %(other)s, 1 from generate_series(1, 20000) n""",
    """insert into app.group_members (group_id, user_id, role, created_at)
       select g.id, %(other)s, 'owner', g.created_at from app.groups g
       where g.creator_id = %(other)s""",
    """with mine as (
           insert into app.groups (name, creator_id, member_count)
           select 'Mine ' || n, %(user)s, 1 from generate_series(1, 60) n returning id)
       insert into app.group_members (group_id, user_id, role, created_at)
       select m.id, %(user)s, 'owner', now() - random() * interval '10 days' from mine m""",
    # A group of the caller's with 59 members more (new accounts): 60 in all.
    """with people as (
           insert into auth.users (email)
           select 'plans-' || n || '-' || gen_random_uuid() || '@example.com'
           from generate_series(1, 59) n returning id),
       theirs as (
           select m.group_id from app.group_members m where m.user_id = %(user)s
           order by m.group_id limit 1)
       insert into app.group_members (group_id, user_id, role, created_at)
       select t.group_id, p.id, 'member', now() - random() * interval '1 day'
       from theirs t, people p""",
    """insert into app.notifications (user_id, type, created_at)
       select u, 'digest', now() - n * interval '1 second'
       from generate_series(1, 40000) n,
            lateral (select case when n <= 60 then %(user)s::uuid else %(other)s::uuid end u) x""",
    """insert into app.like_groups (event_id, creator_id, status, decided_at)
       select %(event)s, %(other)s, 'rejected', now() from generate_series(1, 20060)""",
    """insert into app.like_group_members (group_id, event_id, user_id, pending, created_at)
       select g.id, g.event_id,
              case when row_number() over (order by g.id) <= 60 then %(user)s::uuid
                   else %(other)s::uuid end,
              false, now() - random() * interval '10 days'
       from app.like_groups g where g.event_id = %(event)s""",
    """insert into app.like_group_routes (id, event_id)
       select g.id, g.event_id from app.like_groups g where g.event_id = %(event)s""",
    """insert into app.pair_invites (event_id, inviter_id, short_code, status, expires_at,
                                     revoked_at, created_at)
       select %(event)s, %(user)s,
              (select string_agg(substr('23456789ABCDEFGHJKMNPQRSTUVWXYZ',
                                        1 + floor(random() * 31)::int, 1), '')
               from generate_series(1, 8 + 0 * n)),
              'revoked', now() + interval '1 day', now(), now() - n * interval '1 minute'
       from generate_series(1, 60) n""",
]
# The approval queue, a group's invites, chats and friends: the event's 20,060
# rejected like groups above plus 60 pending ones, the caller an author; a chat
# for each rejected group (60 with the caller in them); 20,000 invites of
# someone else's group and 60 of the caller's; 20,000 friendships of someone
# else's and 60 of the caller's, on either side of the pair.
MORE_LOAD = [
    """insert into app.event_authors (event_id, user_id) values (%(event)s, %(user)s)""",
    """insert into app.like_groups (event_id, creator_id, created_at)
       select %(event)s, %(other)s, now() - n * interval '1 minute'
       from generate_series(1, 60) n""",
    """insert into app.chats (type, like_group_id, event_id)
       select 'approved_group', g.id, g.event_id from app.like_groups g
       where g.event_id = %(event)s and g.status = 'rejected'""",
    """insert into app.chat_participants (chat_id, event_id, user_id, created_at)
       select c.id, c.event_id,
              case when row_number() over (order by c.id) <= 60 then %(user)s::uuid
                   else %(other)s::uuid end,
              now() - random() * interval '10 days'
       from app.chats c where c.event_id = %(event)s""",
    """insert into app.group_invites (group_id, created_by, code_hash, code_hint, created_at)
       select g.id, g.creator_id, sha256(gen_random_uuid()::text::bytea), 'abcd',
              now() - n * interval '1 second'
       from generate_series(1, 20060) n,
            lateral (select x.id, x.creator_id from app.groups x
                     where x.creator_id = case when n <= 60 then %(user)s::uuid
                                               else %(other)s::uuid end
                     order by x.id limit 1) g""",
    """with people as (
           insert into auth.users (email)
           select 'friend-' || n || '-' || gen_random_uuid() || '@example.com'
           from generate_series(1, 20060) n returning id),
       numbered as (select p.id, row_number() over (order by p.id) n from people p)
       insert into app.friendships (user_low, user_high, requester_id, status, created_at)
       select least(x.me, y.id), greatest(x.me, y.id), y.id, 'pending',
              now() - y.n * interval '1 second'
       from numbered y,
            lateral (select case when y.n <= 60 then %(user)s::uuid
                                 else %(other)s::uuid end me) x""",
]
LIST_TABLES = ("groups", "group_members", "notifications", "like_groups",
               "like_group_members", "pair_invites", "chats", "chat_participants",
               "group_invites", "friendships")


def test_lists_read_index_ranges_only(database_url: str,
                                      make_user: Callable[[], User]) -> None:
    user, other = make_user(), make_user()
    with psycopg.connect(database_url) as conn:  # one transaction, rolled back
        (event,) = conn.execute(
            "insert into app.events (title, creator_id) values ('Loaded', %s) returning id",
            (other.id,)).fetchone() or (None,)
        conn.execute(LOAD, {"event": event, "inviter": other.id})
        values = {"user": user.id, "other": other.id, "event": event}
        for statement in LISTS_LOAD + MORE_LOAD:
            conn.execute(statement, values)  # type: ignore[arg-type]  # the test's own SQL
        for table in LIST_TABLES:
            conn.execute(f"analyze app.{table}")  # type: ignore[arg-type]
        # The first page and the next (after the first page's last item) of each.
        queries = []
        (group,) = conn.execute(
            "select m.group_id::text from app.group_members m where m.user_id = %s "
            "and m.role = 'owner' order by m.group_id limit 1", (user.id,)).fetchone() or ("",)
        for call, key in (("my_groups()", None), ("my_like_groups()", None),
                          ("my_notifications()", None), ("my_pair_invites()", "sent"),
                          (f"group_members('{group}')", None), ("my_chats()", None),
                          (f"list_group_invites('{group}')", None), ("list_friends()", None)):
            found = plans(conn, user, f"select api.{call}")
            (answer,) = conn.execute(f"select api.{call}").fetchone() or (None,)  # type: ignore[arg-type]
            page = answer[key] if key else answer
            assert len(page) == 50, call
            cursor = page[-1]["user_id"] if "user_id" in page[-1] else page[-1]["id"]
            name, _, first = call.partition("(")
            first = first.removesuffix(")")
            argument = "sent_after" if key else "after"
            queries.append((call, found))
            nxt = f"select api.{name}({first + ', ' if first else ''}{argument} => '{cursor}')"
            queries.append((nxt, plans(conn, user, nxt)))
            (rest,) = conn.execute(nxt).fetchone() or (None,)  # type: ignore[arg-type]
            assert len(rest[key] if key else rest) == 10, nxt
        # The approval queue: 50 of the 60 pending groups, then the 10 others
        # and 40 decided ones, then 50 decided ones after the last decided.
        queue = f"event_like_groups('{event}'"
        found = plans(conn, user, f"select api.{queue})")
        (answer,) = conn.execute(f"select api.{queue})").fetchone() or (None,)  # type: ignore[arg-type]
        assert [g["status"] for g in answer["groups"]] == ["pending"] * 50
        queries.append((queue, found))
        nxt = f"select api.{queue}, pending_after => '{answer['groups'][-1]['id']}')"
        queries.append((nxt, plans(conn, user, nxt)))
        (rest,) = conn.execute(nxt).fetchone() or (None,)  # type: ignore[arg-type]
        assert [g["status"] for g in rest["groups"]] == ["pending"] * 10 + ["rejected"] * 40
        last = f"select api.{queue}, decided_after => '{rest['groups'][-1]['id']}')"
        queries.append((last, plans(conn, user, last)))
        (decided,) = conn.execute(last).fetchone() or (None,)  # type: ignore[arg-type]
        assert [g["status"] for g in decided["groups"]] == ["rejected"] * 50
        conn.rollback()
    for query, found in queries:
        assert found, query  # auto_explain did show the function's statements
        scans = [p for p in found for t in LIST_TABLES if f"Seq Scan on {t}" in p]
        assert not scans, (query, "\n\n".join(scans))
