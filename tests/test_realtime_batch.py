"""One NOTIFY per transaction (issue 19, item 8; sql/functions/45_realtime.sql).

An approval publishes a message per member, one on the group and one on the
authors' queue: they go in one NOTIFY, a JSON array in the order they were
published, and the gateway fans each out as before (SSE here; the Phoenix
sockets read the same hub, tests/test_realtime_socket.py). Every api function
that opens a batch ends it (reject, an author removed or added back, a member
removed: each decision arrives in one NOTIFY). A batch past the
8000-byte payload limit goes as several arrays, each under it, in order. A
message published outside a batch goes alone, as a JSON object; a rolled-back
transaction or savepoint takes its messages with it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from test_realtime import Frame, Subscriber, approve, befriend, create_event, pending_group

from conftest import GatewayProcess, User
from gateway.realtime.hub import Hub, Message

CHANNEL = "joinery_realtime"
LIMIT = 8000  # PostgreSQL refuses a NOTIFY payload of this many bytes or more


@pytest.fixture
def listener(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"listen {CHANNEL}")
        yield conn


def received(conn: psycopg.Connection, quiet: float = 0.5) -> list[str]:
    """The payloads that arrive until none has for `quiet` seconds."""
    payloads = []
    while True:
        batch = [n.payload for n in conn.notifies(timeout=quiet, stop_after=1)]
        if not batch:
            return payloads
        payloads += batch


def until_count(name: str, count: int) -> Callable[[Frame], bool]:
    seen = [0]

    def done(frame: Frame) -> bool:
        seen[0] += frame.event == name
        return seen[0] >= count

    return done


def test_an_approval_of_ten_is_one_notify_carrying_every_message_in_order(
        gateway: GatewayProcess, client: httpx.Client, make_user: Callable[[], User],
        admin: psycopg.Connection, listener: psycopg.Connection) -> None:
    group = pending_group(client, make_user, friends=9)
    # The like: one message, alone (a JSON object, as before batches).
    assert [json.loads(p) for p in received(listener)] == [
        {"type": "like_group_changed", "topic": f"event:{group.event_id}",
         "group_id": group.id, "status": "pending"}]
    friend = group.friends[0]
    creator_stream = Subscriber(gateway.url, [f"user:{group.creator.id}", f"group:{group.id}"],
                                group.creator, until=until_count("group_approved", 2))
    friend_stream = Subscriber(gateway.url, [f"user:{friend.id}"], friend,
                               until=until_count("group_approved", 1))
    creator_stream.wait_ready()
    friend_stream.wait_ready()

    decided = approve(client, group)
    [payload] = received(listener)
    chat = decided["chatId"]
    notes = dict(admin.execute(
        "select user_id::text, id::text from app.notifications "
        "where type = 'group_approved' and data ->> 'group_id' = %s", (group.id,)).fetchall())
    members = sorted(m.id for m in group.members)  # published in the members' id order
    expected = [
        *({"type": "group_approved", "topic": f"user:{m}", "group_id": group.id,
           "event_id": group.event_id, "chat_id": chat, "notification_id": notes[m]}
          for m in members),
        {"type": "group_approved", "topic": f"group:{group.id}", "group_id": group.id,
         "chat_id": chat},
        {"type": "like_group_changed", "topic": f"event:{group.event_id}",
         "group_id": group.id, "status": "approved"},
    ]
    assert json.loads(payload) == expected
    assert len(expected) == 12 and len(payload.encode()) < LIMIT

    # Fanned out one message at a time, each to its own topic's subscribers.
    creator_stream.join()
    friend_stream.join()
    by_topic = {e["topic"]: e for e in expected}
    got = [f.json() for f in creator_stream.events("group_approved")]
    assert sorted(got, key=lambda m: m["topic"]) == sorted(
        [by_topic[f"user:{group.creator.id}"], by_topic[f"group:{group.id}"]],
        key=lambda m: m["topic"])
    assert [f.json() for f in friend_stream.events("group_approved")] == [
        by_topic[f"user:{friend.id}"]]


def rpc(client: httpx.Client, user: User, name: str, **args: Any) -> dict[str, Any]:
    response = client.post(f"/rest/v1/rpc/{name}", json=args, headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


def event_with_group(client: httpx.Client, make_user: Callable[[], User], authors: int,
                     friends: int) -> tuple[list[User], str, str, list[User]]:
    """An event of `authors` authors (the first its creator) and a pending group of
    a creator and `friends` friends: (authors, event id, group id, members)."""
    people = [make_user() for _ in range(authors)]
    event = create_event(client, people[0])
    for author in people[1:]:
        rpc(client, people[0], "add_event_author", event_id=event, user_id=author.id)
    creator, pals = make_user(), [make_user() for _ in range(friends)]
    for pal in pals:
        befriend(client, creator, pal)
    group = rpc(client, creator, "like_event", event_id=event, member_ids=[p.id for p in pals])
    return people, event, group["id"], [creator, *pals]


def decided(group: str, members: list[User], kind: str) -> list[tuple[str, str]]:
    """(topic, type) of a decision's messages, in the order they are published."""
    return [*((f"user:{m}", kind) for m in sorted(m.id for m in members)),
            (f"group:{group}", kind)]


def one_notify(listener: psycopg.Connection) -> list[tuple[str, str]]:
    [payload] = received(listener)
    return [(m["topic"], m["type"]) for m in json.loads(payload)]


@pytest.mark.parametrize("how", ["reject", "remove_author", "add_author_back", "remove_member"])
def test_every_function_that_opens_a_batch_sends_it(
        how: str, client: httpx.Client, make_user: Callable[[], User],
        listener: psycopg.Connection) -> None:
    """Each api function that opens a batch ends it: its messages arrive, in one
    NOTIFY."""
    if how == "reject":
        [author], event, group, members = event_with_group(client, make_user, 1, 2)
        received(listener)
        rpc(client, author, "reject_like_group", group_id=group)
        expected = [*decided(group, members, "group_rejected"),
                    (f"event:{event}", "like_group_changed")]
    elif how == "remove_author":
        # Two authors, two members: two approvals needed; one given. Without the
        # second author one is enough, and the removal approves the group.
        (a, b), event, group, members = event_with_group(client, make_user, 2, 1)
        assert rpc(client, a, "approve_like_group", group_id=group)["status"] == "pending"
        received(listener)
        rpc(client, a, "remove_event_author", event_id=event, user_id=b.id)
        expected = decided(group, members, "group_approved")
    elif how == "add_author_back":
        # B's approval stops counting when B is removed and counts again when
        # B is added back, which completes the two needed.
        (a, b, c), event, group, members = event_with_group(client, make_user, 3, 1)
        assert rpc(client, b, "approve_like_group", group_id=group)["status"] == "pending"
        rpc(client, a, "remove_event_author", event_id=event, user_id=b.id)
        assert rpc(client, c, "approve_like_group", group_id=group)["status"] == "pending"
        received(listener)
        rpc(client, a, "add_event_author", event_id=event, user_id=b.id)
        expected = decided(group, members, "group_approved")
    else:
        # Three authors, three members: three approvals needed; two given. With a
        # member fewer two are enough, and the removal approves the group.
        (a, b, _), event, group, members = event_with_group(client, make_user, 3, 2)
        for author in (a, b):
            assert rpc(client, author, "approve_like_group", group_id=group)["status"] == "pending"
        received(listener)
        leaving = members[2]
        rpc(client, leaving, "remove_like_group_member", group_id=group, user_id=leaving.id)
        expected = decided(group, members[:2], "group_approved")
    assert one_notify(listener) == expected


def test_a_batch_past_the_payload_limit_goes_in_several_notifies_in_order(
        gateway: GatewayProcess, make_user: Callable[[], User], admin: psycopg.Connection,
        listener: psycopg.Connection) -> None:
    user = make_user()
    topic = f"user:{user.id}"
    count = 50
    stream = Subscriber(gateway.url, [topic], user, until=until_count("batch_test", count))
    stream.wait_ready()
    with admin.transaction():
        assert admin.execute("select private.publish_batch_begin()").fetchone() == (True,)
        # Opened already: a nested begin says so, and its end sends nothing.
        assert admin.execute("select private.publish_batch_begin()").fetchone() == (False,)
        for seq in range(count):
            admin.execute("select private.publish(%s, %s::jsonb)", (topic, orjson.dumps(
                {"type": "batch_test", "seq": seq, "pad": "x" * 300}).decode()))
        assert admin.execute("select private.publish_batch_end(false)").fetchone() == (0,)
        [(sent,)] = admin.execute("select private.publish_batch_end(true)").fetchall()
    payloads = received(listener)
    assert len(payloads) == sent == 3  # 50 messages of about 390 bytes: 20, 20, 10
    chunks = [json.loads(p) for p in payloads]
    assert all(isinstance(c, list) for c in chunks)
    assert all(len(p.encode()) < LIMIT for p in payloads)
    # As few as fit: no chunk could have taken the next chunk's first message.
    for payload, following in zip(payloads, chunks[1:], strict=False):
        first = admin.execute("select %s::jsonb::text", (json.dumps(following[0]),)).fetchone()
        assert first and len(payload.encode()) + 1 + len(first[0].encode()) >= LIMIT
    assert [len(c) for c in chunks] == [20, 20, 10]
    messages = [m for c in chunks for m in c]
    assert messages == [{"type": "batch_test", "seq": seq, "pad": "x" * 300, "topic": topic}
                        for seq in range(count)]
    stream.join()
    assert [f.json()["seq"] for f in stream.events("batch_test")] == list(range(count))


def publish(conn: psycopg.Connection, topic: str, message: dict[str, Any]) -> None:
    conn.execute("select private.publish(%s, %s::jsonb)", (topic, json.dumps(message)))


def test_alone_outside_a_batch_and_nothing_from_what_rolls_back(
        admin: psycopg.Connection, listener: psycopg.Connection) -> None:
    topic = f"user:{uuid.uuid4()}"
    # Outside a batch: one NOTIFY per message, each a JSON object.
    with admin.transaction():
        publish(admin, topic, {"type": "a"})
        publish(admin, topic, {"type": "b"})
    assert [json.loads(p) for p in received(listener)] == [
        {"type": "a", "topic": topic}, {"type": "b", "topic": topic}]

    # A rolled-back savepoint takes its messages out of the batch.
    with admin.transaction():
        admin.execute("select private.publish_batch_begin()")
        publish(admin, topic, {"type": "kept"})
        with pytest.raises(psycopg.errors.DivisionByZero), admin.transaction():
            publish(admin, topic, {"type": "undone"})
            admin.execute("select 1 / 0")
        publish(admin, topic, {"type": "also kept"})
        assert admin.execute("select private.publish_batch_end(true)").fetchone() == (1,)
    assert [json.loads(p) for p in received(listener)] == [
        [{"type": "kept", "topic": topic}, {"type": "also kept", "topic": topic}]]

    # A rolled-back transaction sends nothing; an empty batch sends nothing.
    with pytest.raises(psycopg.errors.DivisionByZero), admin.transaction():
        admin.execute("select private.publish_batch_begin()")
        publish(admin, topic, {"type": "gone"})
        admin.execute("select private.publish_batch_end(true)")
        admin.execute("select 1 / 0")
    with admin.transaction():
        admin.execute("select private.publish_batch_begin()")
        assert admin.execute("select private.publish_batch_end(true)").fetchone() == (0,)
    assert received(listener) == []

    # The batch ended with its transaction: the next message goes alone.
    assert admin.execute(
        "select coalesce(current_setting('joinery.realtime_batch', true), '')").fetchone() == ("",)
    publish(admin, topic, {"type": "c"})
    assert [json.loads(p) for p in received(listener)] == [{"type": "c", "topic": topic}]


def test_the_hub_reads_one_message_or_an_array_of_them() -> None:
    hub = Hub("postgresql://unused")
    with hub.subscribe(["user:a", "user:b"]) as subscription:
        hub._dispatch('{"topic": "user:a", "type": "one"}')
        hub._dispatch('[{"topic": "user:b", "type": "two"}, {"topic": "user:c", "type": "x"}, 5, '
                      '{"type": "no topic"}, {"topic": 7}, {"topic": "user:a", "type": "three"}]')
        hub._dispatch("not json")
        hub._dispatch("[]")
        out: list[Message] = []
        while not subscription.queue.empty():
            message = subscription.queue.get_nowait()
            assert message is not None
            out.append(message)
    assert [(m.topic, m.event, m.data) for m in out] == [
        ("user:a", "one", {"topic": "user:a", "type": "one"}),
        ("user:b", "two", {"topic": "user:b", "type": "two"}),
        ("user:a", "three", {"topic": "user:a", "type": "three"}),
    ]
    assert not subscription.lost
