"""`python -m gateway verify` (private.verify): a clean data set made by the api
functions holds every invariant; each invariant broken on purpose, as superuser,
is the one reported, with exactly the offending ids; the command's exit codes and
outputs; it takes only ACCESS SHARE locks and gives up at its timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import ROOT
from gateway.tools.migrate import migrate

NAMES = ["group_invite_use_count", "event_capacity", "event_seats_taken",
         "group_member_count", "pair_registrations", "accepted_pair_invite_registrations",
         "like_group_approvals", "like_group_chat", "unapproved_group_chat",
         "pending_groups_per_user", "mail_outbox_stuck", "audit_partitions", "plain_text_secrets"]


@dataclass
class Data:
    """The ids of the clean data set, by role in it."""

    url: str
    users: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)


def call(conn: psycopg.Connection, user: str, function: str, *args: Any) -> Any:
    """api.<function>(args) as `user`, the way the gateway calls it, committed."""
    with conn.transaction():
        conn.execute("select set_config('request.jwt.claims', %s, true)",
                     (json.dumps({"sub": user, "role": "authenticated"}),))
        conn.execute("set local role authenticated")
        placeholders = ", ".join(["%s"] * len(args))
        row = conn.execute(f"select api.{function}({placeholders})", args).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def build(url: str) -> Data:
    """Groups with an invite used once, an event with one registration, an accepted
    pair, like groups approved, rejected and pending, an invitation mail queued and
    a stop token: everything through the api functions."""
    data = Data(url)
    with psycopg.connect(url, autocommit=True) as conn:
        for name in ("owner", "joiner", "solo", "inviter", "invitee", "creator", "friend",
                     "author2", "other", "sender"):
            row = conn.execute(
                "insert into auth.users (email) values (%s) returning id",
                (f"{name}-{uuid.uuid4().hex[:8]}@example.com",)).fetchone()
            assert row is not None
            data.users[name] = str(row[0])
        u = data.users
        group = call(conn, u["owner"], "create_group", "Verify")
        invite = call(conn, u["owner"], "create_group_invite", group["id"])
        data.ids["invite"] = invite["id"]
        data.ids["group"] = group["id"]
        call(conn, u["joiner"], "join_group", invite["code"])

        event = call(conn, u["owner"], "create_event", "Seats", None, None, 5)
        data.ids["event"] = event["id"]
        call(conn, u["solo"], "register_for_event", event["id"])

        pair_event = call(conn, u["owner"], "create_event", "Pairs", None, None, 10)
        data.ids["pair_event"] = pair_event["id"]
        pinv = call(conn, u["inviter"], "create_pair_invite", pair_event["id"])
        token = call(conn, u["invitee"], "join_pair_invite", pinv["short_code"])["token"]
        pair = call(conn, u["invitee"], "accept_pair_invite", token)
        data.ids["pair_invite"], data.ids["pair"] = pinv["id"], pair["pair_id"]

        like = call(conn, u["owner"], "create_event", "Likes")
        data.ids["like_event"] = like["id"]
        call(conn, u["owner"], "add_event_author", like["id"], u["author2"])
        call(conn, u["creator"], "request_friend", u["friend"])
        call(conn, u["friend"], "accept_friend", u["creator"])
        approved = call(conn, u["creator"], "like_event", like["id"], [u["friend"]])
        call(conn, u["owner"], "approve_like_group", approved["id"])
        done = call(conn, u["author2"], "approve_like_group", approved["id"])
        assert done["status"] == "approved"
        data.ids["approved"], data.ids["chat"] = approved["id"], done["chat_id"]
        rejected = call(conn, u["creator"], "like_event", like["id"], [u["friend"]])
        assert call(conn, u["owner"], "reject_like_group", rejected["id"])["status"] == "rejected"
        data.ids["rejected"] = rejected["id"]
        pending = call(conn, u["creator"], "like_event", like["id"], [u["friend"]])
        data.ids["pending"] = pending["id"]

        call(conn, u["sender"], "create_pair_invite", pair_event["id"], "mailed@example.com")
        row = conn.execute("select id from app.mail_outbox").fetchone()
        assert row is not None
        data.ids["mail"] = str(row[0])
        conn.execute("set role service_role")
        conn.execute("select private.mail_stop_token('mailed@example.com')")
        conn.execute("reset role")
    return data


@pytest.fixture(scope="module")
def data(database_url: str) -> Iterator[Data]:
    """A database of its own, migrated, with the clean data set; dropped afterwards."""
    name = f"joinery_verify_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(database_url)
    params["dbname"] = name
    url = make_conninfo(**params)
    try:
        migrate(url)
        yield build(url)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def broken(conn: psycopg.Connection) -> dict[str, tuple[int, list[str]]]:
    """The invariants private.verify reports broken: name -> (count, ids)."""
    rows = conn.execute("select invariant, broken, ids from private.verify()").fetchall()
    assert [r[0] for r in rows] == NAMES
    return {name: (n, ids) for name, n, ids in rows if n}


def test_clean_data_holds_every_invariant(data: Data) -> None:
    with psycopg.connect(data.url) as conn:
        assert broken(conn) == {}


def next_month_partition() -> str:
    now = datetime.now(UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return f"app.audit_log_p{year}{month:02d}"


# Each case: what it breaks (SQL run as superuser, in a transaction rolled back
# afterwards) and the one invariant and ids verify must report.
CASES: dict[str, Callable[[Data], tuple[list[str], list[str]]]] = {
    "group_invite_use_count": lambda d: (
        [f"update app.group_invites set use_count = 2 where id = '{d.ids['invite']}'"],
        [d.ids["invite"]]),
    "event_capacity": lambda d: (
        ["alter table app.events drop constraint events_seats_check",
         f"update app.events set capacity = 1 where id = '{d.ids['pair_event']}'"],
        [d.ids["pair_event"]]),
    "event_seats_taken": lambda d: (
        [f"update app.events set seats_taken = 2 where id = '{d.ids['event']}'"],
        [d.ids["event"]]),
    "group_member_count": lambda d: (
        [f"update app.groups set member_count = 1 where id = '{d.ids['group']}'"],
        [d.ids["group"]]),
    "pair_registrations": lambda d: (
        [f"insert into app.registrations (event_id, user_id, status, pair_id) values "
         f"('{d.ids['pair_event']}', '{d.users['other']}', 'cancelled', '{d.ids['pair']}')"],
        [d.ids["pair"]]),
    "accepted_pair_invite_registrations": lambda d: (
        [f"update app.pair_invites set invitee_id = '{d.users['other']}' "
         f"where id = '{d.ids['pair_invite']}'"],
        [d.ids["pair_invite"]]),
    "like_group_approvals": lambda d: (
        [f"delete from app.like_group_approvals where group_id = '{d.ids['approved']}' "
         f"and author_id = '{d.users['author2']}'"],
        [d.ids["approved"]]),
    "like_group_chat": lambda d: (
        [f"delete from app.chat_participants where chat_id = '{d.ids['chat']}' "
         f"and user_id = '{d.users['friend']}'"],
        [d.ids["approved"]]),
    "unapproved_group_chat": lambda d: (
        [f"insert into app.chats (type, like_group_id, event_id) values "
         f"('approved_group', '{d.ids['rejected']}', '{d.ids['like_event']}')"],
        [d.ids["rejected"]]),
    "pending_groups_per_user": lambda d: (
        [f"update app.like_groups set status = 'pending', decided_at = null "
         f"where id = '{d.ids['rejected']}'"],
        sorted([d.users["creator"], d.users["friend"]])),
    "mail_outbox_stuck": lambda d: (
        [f"update app.mail_outbox set attempts = 8 where id = '{d.ids['mail']}'"],
        [d.ids["mail"]]),
    "audit_partitions": lambda d: (
        [f"drop table {next_month_partition()}"], [next_month_partition()]),
    "plain_text_secrets": lambda d: (
        ["update app.group_invites set code_hash = convert_to(gen_random_uuid()::text, 'UTF8') "
         f"where id = '{d.ids['invite']}'",
         "update app.mail_stop_tokens set token_hash = convert_to('a-plain-token', 'UTF8')"],
        [f"app.group_invites:{d.ids['invite']}", "app.mail_stop_tokens:(0,2)"]),
}


@pytest.mark.parametrize("name", NAMES)
def test_each_broken_invariant_is_the_one_reported(data: Data, name: str) -> None:
    statements, ids = CASES[name](data)
    with psycopg.connect(data.url) as conn:
        try:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]  # the test's own SQL
            assert broken(conn) == {name: (len(ids), ids)}
        finally:
            conn.rollback()
        assert broken(conn) == {}


def test_ids_are_capped_at_ten_and_counted(data: Data) -> None:
    with psycopg.connect(data.url) as conn:
        try:
            conn.execute("set session_replication_role = replica")
            conn.execute("insert into app.mail_outbox (to_email, template, attempts) "
                         "select 'x@example.com', 'pair_invite', 9 from generate_series(1, 12)")
            found = broken(conn)
            assert list(found) == ["mail_outbox_stuck"]
            count, ids = found["mail_outbox_stuck"]
            expected = sorted(r[0] for r in conn.execute(
                "select id::text from app.mail_outbox where attempts = 9").fetchall())[:10]
            assert (count, ids) == (12, expected)
        finally:
            conn.rollback()


def run_verify(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "verify", *args], cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, **env},
        capture_output=True, text=True, timeout=60)


def test_command_clean_exits_0(data: Data) -> None:
    done = run_verify(data.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:-1] == [f"ok     {name}" for name in NAMES]
    assert lines[-1].startswith("verify: all 13 invariants hold (")
    done = run_verify(data.url, "--json")
    assert done.returncode == 0
    answer = json.loads(done.stdout)
    assert answer["ok"] is True
    assert answer["invariants"] == [{"name": n, "ok": True, "broken": 0, "ids": []}
                                    for n in NAMES]


def test_command_broken_exits_1_naming_it(data: Data) -> None:
    event = data.ids["event"]
    with psycopg.connect(data.url, autocommit=True) as conn:
        conn.execute("update app.events set seats_taken = 3 where id = %s", (event,))
        try:
            text = run_verify(data.url)
            machine = run_verify(data.url, "--json")
        finally:
            conn.execute("update app.events set seats_taken = 1 where id = %s", (event,))
    assert text.returncode == 1, text.stderr
    lines = text.stdout.splitlines()
    assert lines[2] == f"BROKEN event_seats_taken: 1 row(s): {event}"
    assert [line for line in lines if not line.startswith("ok ")] == [
        lines[2], lines[-1]]
    assert lines[-1].startswith("verify: 1 of 13 invariants broken (")
    assert machine.returncode == 1
    answer = json.loads(machine.stdout)
    assert answer["ok"] is False
    assert [i for i in answer["invariants"] if not i["ok"]] == [
        {"name": "event_seats_taken", "ok": False, "broken": 1, "ids": [event]}]


def test_only_access_share_locks_in_a_read_only_snapshot(data: Data) -> None:
    with psycopg.connect(data.url) as conn:
        conn.execute("start transaction isolation level repeatable read, read only")
        broken(conn)
        modes = {r[0] for r in conn.execute(
            "select distinct mode from pg_locks where pid = pg_backend_pid() "
            "and locktype = 'relation'").fetchall()}
        assert modes == {"AccessShareLock"}
        conn.rollback()
    with psycopg.connect(data.url, autocommit=True) as conn:
        grantees = {r[0] for r in conn.execute(
            "select grantee::regrole::text from pg_proc p, aclexplode(p.proacl) "
            "where p.oid = 'private.verify(integer, integer)'::regprocedure "
            "and privilege_type = 'EXECUTE'").fetchall()}
        assert grantees == {"postgres", "service_role"}


def test_gives_up_at_its_timeout_behind_a_lock(data: Data) -> None:
    """A migration holding ACCESS EXCLUSIVE on a table: verify waits at most its
    statement timeout, then exits 2 and says why."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(data.url) as conn:
            conn.execute("lock table app.events in access exclusive mode")
            holding.set()
            release.wait(30)
            conn.rollback()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        done = run_verify(data.url, VERIFY_STATEMENT_TIMEOUT_MS="300")
    finally:
        release.set()
        thread.join()
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == "verify: could not check: canceling statement due to statement timeout\n"
