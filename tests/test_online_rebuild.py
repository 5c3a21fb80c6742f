"""The rebuild of sql/ online: it takes no lock the traffic holds, gives up within
MIGRATE_LOCK_TIMEOUT (changing nothing) when it needs one a long transaction
holds, keeps grants by replacing functions in place, and never drops an
operator's object that depends on its functions (it refuses, naming it)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from test_migrations import migrate, schema_snapshot, scratch_url  # noqa: F401  (fixture)

from conftest import create_user, start_gateway, stop_gateway
from gateway.tools import migrate as migrate_tool


@pytest.fixture
def migrated(scratch_url: str) -> str:  # noqa: F811  (the fixture imported above)
    migrate(scratch_url)
    return scratch_url


@pytest.fixture
def sql_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sql/ copied, and the rebuild reading the copy."""
    copy = tmp_path / "sql"
    shutil.copytree(migrate_tool.SQL_DIR, copy)
    monkeypatch.setattr(migrate_tool, "SQL_DIR", copy)
    monkeypatch.setenv("MIGRATE_LOCK_TIMEOUT", "300ms")
    monkeypatch.setenv("MIGRATE_LOCK_RETRIES", "2")
    return copy


def change_a_docblock(copy: Path) -> None:
    path = copy / "functions" / "20_groups.sql"
    text = path.read_text()
    marker = "/**\n * Creates a group; the caller becomes its owner."
    assert marker in text
    path.write_text(text.replace(marker, "/**\n * (Reworded.) Creates a group; the caller "
                                         "becomes its owner."))


def comments(url: str) -> tuple[str, str, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select obj_description('api'::regnamespace, 'pg_namespace'), "
            "obj_description('private'::regnamespace, 'pg_namespace'), "
            "obj_description('api.create_group(text)'::regprocedure, 'pg_proc')").fetchone()
    assert row is not None
    return row


@pytest.fixture
def traffic(migrated: str, tmp_path: Path) -> Iterator[dict[str, list[int]]]:
    """A gateway on the scratch database, and a thread calling it without pause
    (my_groups reads app.groups; create_event writes app.events) until the test ends."""
    gateway = start_gateway(migrated, tmp_path / "gateway.log")
    user = create_user(migrated)
    statuses: dict[str, list[int]] = {"my_groups": [], "create_event": []}
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(base_url=gateway.url, headers=user.headers, timeout=30) as http:
            while not stop.is_set():
                statuses["my_groups"].append(http.post("/rest/v1/rpc/my_groups").status_code)
                statuses["create_event"].append(http.post(
                    "/rest/v1/rpc/create_event", json={"title": "Online"}).status_code)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join()
        stop_gateway(gateway)


def test_a_docblock_change_rebuilds_beside_a_long_reader_of_events(
        migrated: str, sql_copy: Path, traffic: dict[str, list[int]]) -> None:
    change_a_docblock(sql_copy)
    before = schema_snapshot(migrated)
    with psycopg.connect(migrated) as reader:  # a report or pg_dump: ACCESS SHARE on app.events
        reader.execute("select count(*) from app.events")
        with psycopg.connect(migrated, autocommit=True) as conn:
            assert migrate_tool.apply_code(conn) is True
        reader.rollback()
    assert "(Reworded.)" in comments(migrated)[2]
    # Replaced in place: same functions, grants and policies.
    assert schema_snapshot(migrated) == before
    assert traffic["my_groups"] and set(traffic["my_groups"]) == {200}
    assert set(traffic["create_event"]) == {200}


def test_a_lock_it_cannot_get_makes_it_give_up_changing_nothing(
        migrated: str, sql_copy: Path, traffic: dict[str, list[int]]) -> None:
    """A changed policy needs its table's ACCESS EXCLUSIVE lock: with a reader of
    app.groups open the rebuild waits MIGRATE_LOCK_TIMEOUT per try, then gives up."""
    change_a_docblock(sql_copy)
    policies = sql_copy / "policies" / "20_groups.sql"
    policies.write_text(policies.read_text().replace(
        "using (private.is_group_member(id));",
        "using (private.is_group_member(id) and true);", 1))
    before_comments, before = comments(migrated), schema_snapshot(migrated)
    with psycopg.connect(migrated) as reader:
        reader.execute("select count(*) from app.groups")
        with psycopg.connect(migrated, autocommit=True) as conn, \
                pytest.raises(migrate_tool.RebuildRefused) as gave_up:
            migrate_tool.apply_code(conn)
        reader.rollback()
    message = str(gave_up.value)
    assert "gave up, nothing changed" in message and "MIGRATE_LOCK_TIMEOUT" in message
    assert "groups" in message, message
    assert comments(migrated) == before_comments
    assert schema_snapshot(migrated) == before
    assert set(traffic["my_groups"]) == {200} and set(traffic["create_event"]) == {200}
    # Once the reader is gone the same rebuild goes through.
    with psycopg.connect(migrated, autocommit=True) as conn:
        assert migrate_tool.apply_code(conn) is True
    assert "(Reworded.)" in comments(migrated)[2]


OPERATOR_TABLE = """
create table public.operator_notes (group_id uuid, body text);
alter table public.operator_notes enable row level security;
create policy "Group members read notes" on public.operator_notes
    for select to authenticated using (private.is_group_member(group_id));
"""


def test_an_operators_policy_on_a_private_function_survives(
        migrated: str, sql_copy: Path) -> None:
    change_a_docblock(sql_copy)
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute(OPERATOR_TABLE)
        assert migrate_tool.apply_code(conn) is True
        assert conn.execute("select count(*) from pg_policies where tablename = 'operator_notes'"
                            ).fetchone() == (1,)


def test_dropping_a_function_an_operator_depends_on_is_refused_by_name(
        migrated: str, sql_copy: Path) -> None:
    """A function of `private` that sql/ no longer defines is dropped without
    CASCADE; an operator's policy on it makes the rebuild refuse, naming it."""
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("create function private.retired_helper(g uuid) returns boolean "
                     "language sql stable set search_path = '' as 'select true'")
        conn.execute(OPERATOR_TABLE.replace("private.is_group_member", "private.retired_helper"))
    change_a_docblock(sql_copy)
    before_comments, before = comments(migrated), schema_snapshot(migrated)
    with psycopg.connect(migrated, autocommit=True) as conn, \
            pytest.raises(migrate_tool.RebuildRefused) as refused:
        migrate_tool.apply_code(conn)
    message = str(refused.value)
    assert "private.retired_helper(uuid) is no longer defined in sql/" in message, message
    assert 'policy Group members read notes on table operator_notes' in message, message
    assert comments(migrated) == before_comments
    assert schema_snapshot(migrated) == before
    # Without the operator's policy, the stale function is simply dropped.
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("drop table public.operator_notes")
        assert migrate_tool.apply_code(conn) is True
        assert conn.execute("select to_regprocedure('private.retired_helper(uuid)')"
                            ).fetchone() == (None,)
