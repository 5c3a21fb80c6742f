"""A start that fails safe: `serve` outside development mode refuses to start
without a key of its own; development mode only on loopback; the start-up line;
`python -m gateway check-config`; tokens without exp. Real processes throughout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import JWT_SECRET, ROOT, GatewayProcess, free_port, start_gateway, stop_gateway
from gateway.settings import DEV_JWT_SECRET, authenticator_url

SET_A_KEY = "set JWT_SECRET (HS256, at least 32 bytes), JWT_JWKS or JWT_JWKS_URL"
KEY_VARIABLES = ("JWT_SECRET", "JWT_JWKS", "JWT_JWKS_URL", "JOINERY_ENV", "JWT_AUD",
                 "SMTP_URL", "JWT_REQUIRE_EXP", "WORKERS", "HOST")


def environment(database_url: str, **env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    return {**base, "DATABASE_URL": database_url,
            "GATEWAY_DATABASE_URL": authenticator_url(database_url),
            "PORT": str(free_port()), **env}


def run(command: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("env", "problem"), [
    ({}, f"no key to verify tokens with: {SET_A_KEY}"),
    ({"JOINERY_ENV": "production"}, f"no key to verify tokens with: {SET_A_KEY}"),
    ({"JWT_SECRET": DEV_JWT_SECRET},
     "JWT_SECRET is the development secret, public in this repository: "
     f"{SET_A_KEY} of your own (JOINERY_ENV=development to develop)"),
    ({"JWT_SECRET": "x" * 31}, f"JWT_SECRET is 31 bytes, shorter than 32: {SET_A_KEY}"),
    ({"JOINERY_ENV": "development", "HOST": "0.0.0.0"},
     "JOINERY_ENV=development serves the development sign-in and trusts the development "
     "secret, so it listens on loopback only, not HOST=0.0.0.0: set HOST=127.0.0.1, or "
     f"unset JOINERY_ENV and {SET_A_KEY}"),
])
def test_serve_refuses_to_start(database_url: str, env: dict[str, str], problem: str) -> None:
    done = run("serve", environment(database_url, **env))
    assert done.returncode == 2
    assert done.stderr == f"python -m gateway serve: refusing to start: {problem}\n"
    assert done.stdout == ""


def test_an_unknown_mode_is_refused(database_url: str) -> None:
    done = run("serve", environment(database_url, JOINERY_ENV="dev", JWT_SECRET=JWT_SECRET))
    assert done.returncode == 2
    assert done.stderr == ("python -m gateway: JOINERY_ENV must be development or production, "
                           "not 'dev'\n")


def test_dev_command_is_development_only(database_url: str) -> None:
    done = run("dev", environment(database_url, JWT_SECRET=JWT_SECRET))
    assert done.returncode == 2
    assert done.stderr == ("python -m gateway dev: development only: set "
                           "JOINERY_ENV=development (make run does)\n")


@pytest.fixture(scope="module")
def production(database_url: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[GatewayProcess]:
    """A gateway as in production: no JOINERY_ENV, a secret of its own, SMTP with a
    password, some limits changed."""
    proc = start_gateway(database_url, tmp_path_factory.mktemp("prod") / "gateway.log",
                         JOINERY_ENV="", METRICS_DB_INTERVAL="15",
                         SMTP_URL="smtp://mailer:hunter2-pw@127.0.0.1:2525",
                         MAX_CONNECTIONS="500", SSE_HEARTBEAT="5",
                         APP_URL="https://joinery.example.org")
    yield proc
    stop_gateway(proc)


def test_dev_sign_in_is_absent_outside_development_mode(production: GatewayProcess,
                                                        admin) -> None:
    before = admin.execute("select count(*) from auth.users").fetchone()
    with httpx.Client(base_url=production.url) as http:
        assert http.get("/dev/sign-in").status_code == 404
        answer = http.post("/dev/sign-in", data={"email": "intruder@example.com"})
        assert answer.status_code == 404
        assert answer.text == "Not Found"
        assert "/dev/sign-in" not in http.get("/").text
    assert admin.execute("select count(*) from auth.users").fetchone() == before


def test_one_start_up_line_sums_up_the_configuration(production: GatewayProcess) -> None:
    lines = [line for line in production.log().splitlines()
             if line.startswith("joinery gateway pid")]
    assert len(lines) == 1
    line = lines[0]
    pid = production.process.pid
    assert line == (
        f"joinery gateway pid {pid}: mode production; keys: JWT_SECRET (HS256); exp "
        "required: yes; workers 1; pool 2-20; prepared statements off; APP_URL "
        "https://joinery.example.org; SMTP 127.0.0.1:2525; listening on "
        f"127.0.0.1:{production.url.rsplit(':', 1)[1]}; limits: max_connections=500, "
        "sse_heartbeat=5.0")
    assert JWT_SECRET not in production.log() and "hunter2" not in production.log()


def test_token_without_exp_is_refused(client: httpx.Client, make_user) -> None:
    user = make_user()
    token = jwt.encode({"sub": user.id, "role": "authenticated", "iat": int(time.time())},
                       JWT_SECRET, algorithm="HS256")
    answer = client.post("/rest/v1/rpc/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.json() == {"code": "PGRST301", "message": "token has no exp claim",
                             "details": None, "hint": None}
    assert answer.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="token has no exp claim"')


def test_token_without_exp_is_accepted_with_require_exp_off(
        database_url: str, tmp_path: Path, make_user) -> None:
    user = make_user("Timeless")
    token = jwt.encode({"sub": user.id, "role": "authenticated"}, JWT_SECRET, algorithm="HS256")
    proc = start_gateway(database_url, tmp_path / "gateway.log", JWT_REQUIRE_EXP="off")
    try:
        answer = httpx.post(f"{proc.url}/rest/v1/rpc/me",
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        assert answer.json()["display_name"] == "Timeless"
    finally:
        stop_gateway(proc)


def test_token_command_mints_an_expiring_token(database_url: str) -> None:
    sub = str(uuid.uuid4())
    env = environment(database_url, JWT_SECRET=JWT_SECRET)
    done = subprocess.run([sys.executable, "-m", "gateway", "token", "--sub", sub], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    claims = jwt.decode(done.stdout.strip(), JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == sub
    assert claims["exp"] - claims["iat"] == 3600


# ---- check-config ---------------------------------------------------------------

def test_check_config_passes_on_the_migrated_database(database_url: str) -> None:
    done = run("check-config", environment(database_url, JWT_SECRET=JWT_SECRET))
    assert (done.returncode, done.stdout, done.stderr) == (0, "check-config: ok\n", "")


def test_check_config_names_every_problem(database_url: str) -> None:
    dead = f"postgresql://authenticator@127.0.0.1:{free_port()}/joinery"
    jwks = f"http://127.0.0.1:{free_port()}/jwks.json"
    env = environment(database_url, JWT_JWKS_URL=jwks, GATEWAY_DATABASE_URL=dead)
    done = run("check-config", env)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0] == "check-config: JWT_JWKS_URL: unreachable ([Errno 111] Connection refused)"
    assert lines[1].startswith("check-config: database: cannot connect with "
                               "GATEWAY_DATABASE_URL: connection failed: ")
    assert "Connection refused" in lines[1]


def test_check_config_refuses_what_serve_refuses(database_url: str) -> None:
    done = run("check-config", environment(database_url))
    assert done.returncode == 1
    assert done.stderr == f"check-config: keys: no key to verify tokens with: {SET_A_KEY}\n"
    done = run("check-config", environment(database_url, STATEMENT_TIMEOUT_MS="soon",
                                           JWT_SECRET=JWT_SECRET))
    assert done.returncode == 1
    assert done.stderr == ("check-config: settings: STATEMENT_TIMEOUT_MS must be a whole "
                           "number, not 'soon'\n")


@pytest.fixture
def empty_database(admin) -> Iterator[str]:
    """A database on the test server with nothing migrated into it."""
    name = f"joinery_empty_{uuid.uuid4().hex[:8]}"
    admin.execute(f"create database {name}")
    params = conninfo_to_dict(admin.info.dsn)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        admin.execute(f"drop database {name} with (force)")


def test_check_config_finds_an_unmigrated_database(empty_database: str) -> None:
    done = run("check-config", environment(empty_database, JWT_SECRET=JWT_SECRET))
    assert done.returncode == 1
    assert done.stderr == ("check-config: migrations: none applied (no yoyo table): "
                           "run `make migrate`\n")


def test_check_config_finds_a_missing_migration_and_stale_code(empty_database: str) -> None:
    """A database migrated, then one migration forgotten and the code changed."""
    env = environment(empty_database, JWT_SECRET=JWT_SECRET)
    migrated = run("migrate", env, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    assert run("check-config", env).returncode == 0
    with psycopg.connect(empty_database, autocommit=True) as conn:
        row = conn.execute(
            "select format('%I.%I', n.nspname, c.relname) from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where c.relname = '_yoyo_migration'").fetchone()
        assert row is not None
        conn.execute(f"delete from {row[0]} where migration_id = '0011_covering_indexes'")
        conn.execute("comment on schema api is 'joinery code 0'")
    done = run("check-config", env)
    assert done.returncode == 1
    assert done.stderr == (
        "check-config: migrations: 1 not applied (0011_covering_indexes): run `make "
        "migrate`\ncheck-config: migrations: the functions in the database are not "
        "those of sql/: run `make migrate`\n")


def test_check_config_finds_missing_grants(database_url: str, admin) -> None:
    role = f"joinery_gw_{uuid.uuid4().hex[:8]}"
    admin.execute(f"create role {role} login noinherit")
    admin.execute(f"grant anon to {role}")
    params = conninfo_to_dict(admin.info.dsn)
    params["user"] = role
    try:
        env = environment(database_url, JWT_SECRET=JWT_SECRET,
                          GATEWAY_DATABASE_URL=make_conninfo(**params))
        done = run("check-config", env)
        assert done.returncode == 1
        assert done.stderr == (
            f"check-config: grants: {role} cannot `set role authenticated` (permission "
            f'denied to set role "authenticated"): grant authenticated to {role}\n'
            f"check-config: grants: {role} cannot `set role service_role` (permission "
            f'denied to set role "service_role"): grant service_role to {role}\n')
    finally:
        admin.execute(f"drop role {role}")


def test_dev_command_refuses_a_host_off_loopback(database_url: str, admin) -> None:
    before = admin.execute("select count(*) from auth.users").fetchone()
    done = run("dev", environment(database_url, JOINERY_ENV="development", HOST="0.0.0.0"))
    assert done.returncode == 2
    assert done.stderr.startswith("python -m gateway dev: refusing to start: "
                                  "JOINERY_ENV=development serves the development sign-in")
    assert done.stderr.count("\n") == 1
    assert admin.execute("select count(*) from auth.users").fetchone() == before
