"""`python -m gateway types`: the TypeScript Database type for supabase-js, read from
the live catalogue, checked by the real TypeScript compiler against the real
@supabase/supabase-js types (tests/js/types: one client that must compile, and
samples that must fail with exact error codes at exact places)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import ROOT, install_js
from gateway.tools.types import load, render

JS_DIR = ROOT / "tests" / "js"
SAMPLES = JS_DIR / "types"
TSC = JS_DIR / "node_modules" / "typescript" / "bin" / "tsc"
TSC_TIMEOUT = 180

# file, line, error code: every error the samples must draw, and no other.
EXPECTED_ERRORS = [
    ("wrong_enum.ts", 8, "TS2322"),      # "fr" is not "en" | "ca"
    ("wrong_enum.ts", 12, "TS2322"),     # a like group may also be "rejected"
    ("wrong_function.ts", 7, "TS2345"),  # no api function of that name
    ("wrong_name.ts", 8, "TS2561"),      # `cod` for `code` ("Did you mean ...?")
    ("wrong_name.ts", 9, "TS2353"),      # a name join_group does not have
    ("wrong_result.ts", 10, "TS2322"),   # can_subscribe answers a boolean
    ("wrong_result.ts", 11, "TS2345"),   # the required group_id left out
    ("wrong_type.ts", 8, "TS2322"),      # max_uses as text
    ("wrong_type.ts", 9, "TS2322"),      # one uuid where an array is due
]
ERROR_LINE = re.compile(r"^(?P<file>[\w./-]+)\((?P<line>\d+),\d+\): error (?P<code>TS\d+): ",
                        re.M)


def run_types(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "types"], cwd=ROOT,
                          env={**os.environ, "DATABASE_URL": database_url},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def generated(database_url: str) -> str:
    done = run_types(database_url)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


@pytest.fixture(scope="module")
def tsc() -> list[str]:
    """The TypeScript compiler of tests/js (npm ci when it is not installed yet)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (`node` is not on PATH): tsc needs it")
    install_js(TSC.is_file)
    return [node, str(TSC)]


@pytest.fixture
def project(tmp_path: Path, generated: str) -> Path:
    """The samples beside the generated database.types.ts, with tests/js's
    node_modules reachable, as a frontend project would have them."""
    for sample in SAMPLES.iterdir():
        if sample.suffix in (".ts", ".json"):
            shutil.copy(sample, tmp_path / sample.name)
    (tmp_path / "database.types.ts").write_text(generated)
    (tmp_path / "node_modules").symlink_to(JS_DIR / "node_modules", target_is_directory=True)
    return tmp_path


def compile_errors(tsc: list[str], project: Path) -> tuple[list[tuple[str, int, str]], str]:
    done = subprocess.run([*tsc, "--noEmit", "-p", "tsconfig.json"], cwd=project,
                          capture_output=True, text=True, timeout=TSC_TIMEOUT)
    output = done.stdout + done.stderr
    errors = [(m["file"], int(m["line"]), m["code"]) for m in ERROR_LINE.finditer(output)]
    assert (done.returncode == 0) == (not errors), output
    return sorted(errors), output


def test_client_compiles_and_wrong_calls_fail(tsc: list[str], project: Path) -> None:
    errors, output = compile_errors(tsc, project)
    assert errors == EXPECTED_ERRORS, output
    assert "client.ts" not in output and "database.types.ts" not in output


def test_good_client_alone_compiles(tsc: list[str], project: Path) -> None:
    for sample in project.glob("wrong_*.ts"):
        sample.unlink()
    errors, output = compile_errors(tsc, project)
    assert errors == [], output


def test_wrong_samples_compile_with_hand_written_any_types(
        tsc: list[str], project: Path) -> None:
    """Without the generated types (any schema) every sample compiles: the errors
    above come from the types, not from the samples themselves."""
    (project / "database.types.ts").write_text(
        "export type Json = unknown\nexport type Database = any\n")
    errors, output = compile_errors(tsc, project)
    assert errors == [], output


def block(generated: str, name: str) -> str:
    match = re.search(rf"^      {name}: \{{\n(.*?)^      \}}\n", generated, re.M | re.S)
    assert match is not None, f"{name} is not in the generated types"
    return match[1]


def test_shape_of_the_generated_type(generated: str) -> None:
    assert generated.startswith(
        "export type Json =\n  | string\n  | number\n  | boolean\n  | null\n"
        "  | { [key: string]: Json | undefined }\n  | Json[]\n\nexport type Database = {\n")
    schema = generated[generated.index("  public: {\n"):]
    for section in ("Tables", "Views", "Enums", "CompositeTypes"):
        assert f"    {section}: {{\n      [_ in never]: never\n    }}\n" in schema
    assert '    PostgrestVersion: "12"\n' in generated
    assert "  api: {" not in generated  # served as public, as the gateway serves it
    assert block(generated, "join_group") == (
        "        Args: { code: string }\n"
        "        Returns: { group: { id: string; name: string }; membership: "
        '{ user_id: string; group_id: string; role: "owner" | "member"; joined_at: string } }\n')
    assert block(generated, "create_group_invite") == (
        "        Args: { group_id: string; expires_in?: number; max_uses?: number }\n"
        "        Returns: { id: string; code: string; group_id: string; created_at: string; "
        "expires_at: string | null; max_uses: number | null }\n")
    assert block(generated, "create_event") == (
        "        Args: {\n"
        "          title: string\n"
        "          starts_at?: string\n"
        "          registration_deadline?: string\n"
        "          capacity?: number\n"
        "        }\n"
        "        Returns: { id: string; title: string; creator_id: string; "
        "starts_at: string | null; registration_deadline: string | null; "
        'capacity: number | null; status: "open" | "closed" | "cancelled"; '
        "author_ids: string[]; created_at: string }\n")
    me = ('{ id: string; email: string | null; display_name: string; '
          'locale: "en" | "ca" | null; created_at: string }')
    assert block(generated, "me") == f"        Args: never\n        Returns: {me}\n"
    assert block(generated, "leave_group") == (
        "        Args: { group_id: string }\n        Returns: undefined\n")
    assert block(generated, "can_subscribe") == (
        "        Args: { topic: string }\n        Returns: boolean\n")
    # The docblock's enum (@arg locale enum=en,ca), as the OpenAPI document states it.
    assert block(generated, "update_profile") == (
        '        Args: { display_name?: string; locale?: "en" | "ca" }\n'
        f"        Returns: {me}\n")
    assert block(generated, "like_event") == (
        "        Args: { event_id: string; member_ids?: string[] }\n"
        "        Returns: { id: string; event_id: string; creator_id: string; "
        'status: "pending" | "approved" | "rejected"; member_ids: string[]; '
        "created_at: string; approvals_received: number; approvals_needed: number; "
        "chat_id: string | null }\n")
    # A function without @returns keeps the generator's Json.
    assert block(generated, "list_group_invites") == (
        "        Args: { group_id: string; max_rows?: number; after?: string }\n"
        "        Returns: Json\n")


def test_every_served_function_is_typed(generated: str, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        names = {r[0] for r in conn.execute(
            "select p.proname from pg_proc p where p.pronamespace = 'api'::regnamespace "
            "and p.prokind = 'f'").fetchall()}
    typed = set(re.findall(r"^      (\w+): \{$", generated, re.M))
    assert typed == names


@pytest.fixture
def scratch(database_url: str) -> Iterator[psycopg.Connection]:
    """A connection whose transaction is rolled back: functions created in it are
    seen by `load` on the same connection and by no one else."""
    with psycopg.connect(database_url) as conn:
        yield conn
        conn.rollback()


def test_type_mapping(scratch: psycopg.Connection) -> None:
    scratch.execute("""
        create type api.test_mood as enum ('calm', 'keen');
        create type api.test_pair as (a integer, b text);
        create domain api.test_code as text check (value <> '');
        create function api.test_scalars(
            a uuid, b text, c integer, d bigint, e boolean, f numeric, g jsonb, h json,
            i timestamptz, j date, k uuid[], l integer[], m api.test_mood, n api.test_code,
            o api.test_pair, p jsonb default '{}', q text[] default null
        ) returns void language sql set search_path = '' as '';
        create function api.test_rows(upto integer) returns table (n integer, square bigint)
        language sql set search_path = '' as 'select 1, 1::bigint';
        create function api.test_setof() returns setof uuid
        language sql set search_path = '' as 'select null::uuid';
        create function api.test_set_of_json() returns setof jsonb
        language sql set search_path = '' as 'select null::jsonb';
        create function api.test_mood_of(who uuid) returns api.test_mood
        language sql set search_path = '' as 'select ''calm''::api.test_mood';
        create function api.test_unnamed(integer) returns integer
        language sql set search_path = '' as 'select 1';
        create function api.test_overload(x integer) returns text
        language sql set search_path = '' as 'select null';
        create function api.test_overload(x text, y text) returns text
        language sql set search_path = '' as 'select null';
        create function api.test_out(x integer, out y integer) returns integer
        language sql set search_path = '' as 'select 1';
        create function api.test_documented(mood text, size integer default 1) returns void
        language sql set search_path = '' as '';
        comment on function api.test_documented(text, integer) is
            'Prose.
        @arg mood enum=calm,keen
        @arg size minimum=1';
    """)
    generated = render(load(scratch))
    assert block(generated, "test_scalars") == (
        "        Args: {\n"
        "          a: string\n          b: string\n          c: number\n          d: number\n"
        "          e: boolean\n          f: number\n          g: Json\n          h: Json\n"
        "          i: string\n          j: string\n          k: string[]\n"
        "          l: number[]\n"
        '          m: "calm" | "keen"\n'
        "          n: string\n"
        "          o: { a: number | null; b: string | null }\n"
        "          p?: Json\n          q?: string[]\n"
        "        }\n"
        "        Returns: undefined\n")
    assert block(generated, "test_rows") == (
        "        Args: { upto: number }\n"
        "        Returns: { n: number; square: number }[]\n")
    assert block(generated, "test_setof") == "        Args: never\n        Returns: string[]\n"
    assert block(generated, "test_set_of_json") == (
        "        Args: never\n        Returns: Json[]\n")
    assert block(generated, "test_mood_of") == (
        '        Args: { who: string }\n        Returns: "calm" | "keen"\n')
    assert block(generated, "test_overload") == (
        "        Args: { x: number } | { x: string; y: string }\n        Returns: string\n")
    assert block(generated, "test_documented") == (
        '        Args: { mood: "calm" | "keen"; size?: number }\n'
        "        Returns: undefined\n")
    # Unnamed arguments and OUT parameters: the gateway does not serve these.
    assert "test_unnamed" not in generated and "test_out" not in generated


def test_unreachable_database_is_a_clear_error() -> None:
    done = run_types("postgresql://postgres@127.0.0.1:1/joinery?connect_timeout=2")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("types: cannot read the catalogue: connection failed")
