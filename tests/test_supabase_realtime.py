"""On a Supabase database the same realtime messages also go through
`realtime.send` (inside the approving transaction), and `make migrate` adds a
policy on `realtime.messages` that lets a user read exactly the topics
api.can_subscribe allows. The database here gets Supabase's auth schema (as in
test_supabase_compat) and Supabase's `realtime` schema shape: the partitioned
`realtime.messages` table, `realtime.topic()` and `realtime.send()` as Supabase
Realtime's migrations define them (the newer send that adds an `id` to the
payload), with RLS on and the API roles' grants."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from test_supabase_compat import (
    create_supabase_database,
    drop_database,
    insert_auth_user,
    migrate,
)

pytestmark = pytest.mark.superuser("creates Supabase's roles and a database shaped as its own")

REALTIME_SCHEMA = """
create schema realtime;
grant usage on schema realtime to postgres, anon, authenticated, service_role;

create table realtime.messages (
    topic text not null,
    extension text not null,
    payload jsonb,
    event text,
    private boolean default false,
    updated_at timestamp without time zone not null default now(),
    inserted_at timestamp without time zone not null default now(),
    id uuid not null default gen_random_uuid(),
    primary key (id, inserted_at)
) partition by range (inserted_at);
alter table realtime.messages enable row level security;
grant select, insert, update on realtime.messages to postgres, anon, authenticated,
    service_role;

create function realtime.topic() returns text language sql stable as $$
    select nullif(current_setting('realtime.topic', true), '')::text;
$$;

create function realtime.send(payload jsonb, event text, topic text,
                              private boolean default true) returns void
language plpgsql as $$
declare
    generated_id uuid;
    final_payload jsonb;
begin
    begin
        generated_id := gen_random_uuid();
        if payload ? 'id' then
            final_payload := payload;
        else
            final_payload := jsonb_set(payload, '{id}', to_jsonb(generated_id));
        end if;
        execute format('set local realtime.topic to %L', topic);
        insert into realtime.messages (id, payload, event, topic, private, extension)
        values (generated_id, final_payload, event, topic, private, 'broadcast');
    exception when others then
        raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
    end;
end;
$$;
"""

# Supabase Realtime makes a partition per day ahead of time; one around now will do.
PARTITION = """
create table realtime.messages_now partition of realtime.messages
    for values from (now()::timestamp - interval '1 day') to (now()::timestamp + interval '1 day')
"""


@pytest.fixture
def realtime_url(database_url: str) -> Iterator[str]:
    name = f"joinery_rt_{uuid.uuid4().hex[:8]}"
    url = create_supabase_database(database_url, name, "postgres")
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(REALTIME_SCHEMA)
        conn.execute(PARTITION)
    migrate(url)
    yield url
    drop_database(database_url, name)


def call(conn: psycopg.Connection, user: str, query: str, *args: Any) -> Any:
    """One statement as `user` (role authenticated, claims set), in its own transaction."""
    with conn.transaction():
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)",
                     (f'{{"sub": "{user}", "role": "authenticated"}}',))
        row = conn.execute(query, args).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def readable(conn: psycopg.Connection, user: str, topic: str) -> list[tuple[str, str]]:
    """What `user` may read of realtime.messages while Supabase's Realtime server
    authorises `topic` (it sets realtime.topic and the caller's claims)."""
    with conn.transaction():
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)",
                     (f'{{"sub": "{user}", "role": "authenticated"}}',))
        conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
        return [(r[0], r[1]) for r in conn.execute(
            "select topic, event from realtime.messages order by topic").fetchall()]


def test_approval_goes_through_realtime_send(realtime_url: str) -> None:
    author, creator, friend, stranger = (
        insert_auth_user(realtime_url, f"rt-{uuid.uuid4().hex[:8]}@example.com", None)
        for _ in range(4))
    with psycopg.connect(realtime_url, autocommit=True) as conn:
        event = call(conn, author, "select api.create_event(title => 'Live')")["id"]
        call(conn, creator, "select api.request_friend(user_id => %s)", friend)
        call(conn, friend, "select api.accept_friend(user_id => %s)", creator)
        group = call(conn, creator,
                     "select api.like_event(event_id => %s, member_ids => %s::uuid[])",
                     event, [friend])["id"]
        # The like tells only the authors' approval queue (topic event:{id}).
        assert queue_messages(conn) == [(f"event:{event}", "like_group_changed", "pending")]
        decided = call(conn, author, "select api.approve_like_group(group_id => %s)", group)
        assert decided["status"] == "approved"
        chat = decided["chat_id"]
        assert queue_messages(conn) == [(f"event:{event}", "like_group_changed", "pending"),
                                        (f"event:{event}", "like_group_changed", "approved")]

        rows = conn.execute(
            "select topic, event, payload, private, extension from realtime.messages "
            "where topic not like 'event:%' order by topic").fetchall()
        notes = dict(conn.execute(
            "select user_id::text, id::text from app.notifications "
            "where type = 'group_approved'").fetchall())
        expected = {
            f"group:{group}": {"type": "group_approved", "topic": f"group:{group}",
                               "group_id": group, "chat_id": chat},
            **{f"user:{member}": {"type": "group_approved", "topic": f"user:{member}",
                                  "group_id": group, "event_id": event, "chat_id": chat,
                                  "notification_id": notes[member]}
               for member in (creator, friend)},
        }
        assert sorted(r[0] for r in rows) == sorted(expected)
        for topic, name, payload, private, extension in rows:
            assert (name, private, extension) == ("group_approved", True, "broadcast")
            assert {k: v for k, v in payload.items() if k != "id"} == expected[topic]
            uuid.UUID(payload["id"])  # the id realtime.send adds

        # The policy: each topic is read by whoever api.can_subscribe lets in.
        group_topic = f"group:{group}"
        assert readable(conn, friend, group_topic) == [(group_topic, "group_approved")]
        assert readable(conn, author, group_topic) == [(group_topic, "group_approved")]
        assert readable(conn, stranger, group_topic) == []
        own = f"user:{friend}"
        assert readable(conn, friend, own) == [(own, "group_approved")]
        assert readable(conn, creator, own) == []
        assert readable(conn, stranger, own) == []
        # Without a topic being authorised, nothing is readable.
        with conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)",
                         (f'{{"sub": "{friend}", "role": "authenticated"}}',))
            assert conn.execute("select count(*) from realtime.messages").fetchone() == (0,)


def test_rejection_is_sent_and_a_rolled_back_approval_is_not(realtime_url: str) -> None:
    author, creator = (
        insert_auth_user(realtime_url, f"rt-{uuid.uuid4().hex[:8]}@example.com", None)
        for _ in range(2))
    with psycopg.connect(realtime_url, autocommit=True) as conn:
        event = call(conn, author, "select api.create_event(title => 'Live')")["id"]
        group = call(conn, creator, "select api.like_event(event_id => %s)", event)["id"]
        with pytest.raises(psycopg.errors.QueryCanceled), conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)",
                         (f'{{"sub": "{author}", "role": "authenticated"}}',))
            conn.execute("select api.approve_like_group(group_id => %s)", (group,))
            conn.execute("set local statement_timeout = 1")
            conn.execute("select pg_sleep(1)")
        # Only the like's message to the authors' queue: the approval rolled back.
        assert conn.execute("select count(*) from realtime.messages").fetchone() == (1,)
        assert queue_messages(conn) == [(f"event:{event}", "like_group_changed", "pending")]
        call(conn, author, "select api.reject_like_group(group_id => %s)", group)
        rows = conn.execute("select topic, event from realtime.messages "
                            "where topic not like 'event:%' order by topic").fetchall()
        assert rows == sorted([(f"group:{group}", "group_rejected"),
                               (f"user:{creator}", "group_rejected")])
        assert queue_messages(conn) == [(f"event:{event}", "like_group_changed", "pending"),
                                        (f"event:{event}", "like_group_changed", "rejected")]


def queue_messages(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """The authors' queue messages (topic event:{id}), oldest first: (topic, type,
    status)."""
    return conn.execute(
        "select topic, payload->>'type', payload->>'status' from realtime.messages "
        "where topic like 'event:%' order by inserted_at, id").fetchall()


def test_rebuilding_sql_keeps_one_policy(realtime_url: str) -> None:
    """A rebuild of sql/ (forced here by forgetting its hash) drops the policy with
    the functions it depends on and makes it again: still exactly one."""
    with psycopg.connect(realtime_url, autocommit=True) as conn:
        conn.execute("comment on schema api is 'stale'")
    migrate(realtime_url)
    with psycopg.connect(realtime_url) as conn:
        policies = conn.execute(
            "select policyname, cmd, roles::text from pg_policies "
            "where schemaname = 'realtime' and tablename = 'messages'").fetchall()
    assert policies == [("Subscribers can receive the broadcasts of their topics", "SELECT",
                         "{authenticated}")]


def publish_source(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "select prosrc from pg_proc where oid = 'private.publish(text, jsonb)'::regprocedure"
    ).fetchone()
    assert row is not None
    return str(row[0])


def approved_group(conn: psycopg.Connection, url: str) -> tuple[str, str]:
    """A group of one approved by its event's author: (group id, creator id)."""
    author, creator = (insert_auth_user(url, f"rt-{uuid.uuid4().hex[:8]}@example.com", None)
                       for _ in range(2))
    event = call(conn, author, "select api.create_event(title => 'Live')")["id"]
    group = call(conn, creator, "select api.like_event(event_id => %s)", event)["id"]
    assert call(conn, author, "select api.approve_like_group(group_id => %s)",
                group)["status"] == "approved"
    return group, creator


def test_realtime_installed_or_removed_after_migrate_is_picked_up_by_the_next(
        database_url: str) -> None:
    """private.publish calls realtime.send only when it existed at the rebuild (a
    static call, no lookup per message). Realtime installed after migrate: the
    next migrate rebuilds sql/ (the code mark records the variant), and
    check-config says to run it until then; removed again, the same."""
    from gateway.tools.check import schema_problems

    stale = ("migrations: realtime.send was installed or removed since sql/ was rebuilt "
             "(private.publish calls it only when it was there then): run `make migrate`")
    name = f"joinery_rt_{uuid.uuid4().hex[:8]}"
    url = create_supabase_database(database_url, name, "postgres")
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            assert "realtime.send" not in publish_source(conn).replace(
                "-- realtime.send did not exist when sql/ was rebuilt", "")
            assert schema_problems(conn) == []
            with conn.transaction():
                conn.execute(REALTIME_SCHEMA)
                conn.execute(PARTITION)
            assert schema_problems(conn) == [stale]
            # Until migrate runs again, approvals work and send nothing to Realtime.
            approved_group(conn, url)
            assert conn.execute("select count(*) from realtime.messages").fetchone() == (0,)
        assert migrate(url).endswith("sql/ rebuilt")
        assert migrate(url).endswith("sql/ unchanged")
        with psycopg.connect(url, autocommit=True) as conn:
            assert "perform realtime.send(v_message, v_message ->> 'type', publish.topic, true)" \
                in publish_source(conn)
            assert schema_problems(conn) == []
            group, creator = approved_group(conn, url)
            assert sorted(conn.execute(
                "select topic, event from realtime.messages where topic not like 'event:%' "
                "order by topic").fetchall()) == sorted(
                [(f"group:{group}", "group_approved"), (f"user:{creator}", "group_approved")])
            # The policy came with that rebuild too.
            assert conn.execute(
                "select count(*) from pg_policies where schemaname = 'realtime'").fetchone() == (1,)

            conn.execute("drop schema realtime cascade")
            assert schema_problems(conn) == [stale]
        assert migrate(url).endswith("sql/ rebuilt")
        with psycopg.connect(url, autocommit=True) as conn:
            assert schema_problems(conn) == []
            approved_group(conn, url)  # no realtime.send to call, and none called
    finally:
        drop_database(database_url, name)
