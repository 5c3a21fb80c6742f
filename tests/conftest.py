"""Shared fixtures: the database (DATABASE_URL, migrated by `make test`), users
with tokens, and a real gateway process serving HTTP on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from browser import browser_fixture, person_fixture  # noqa: F401  (the page tests' fixtures)
from gateway.jwt_auth import mint
from gateway.settings import authenticator_url

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "joinery-test-secret-0123456789-abcdefghijklmnop"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `superuser("why")` are skipped, with the reason, where DATABASE_URL
    connects as a role that is not a superuser: on Supabase, `postgres` is not one
    (make test-supabase)."""
    marked = [item for item in items if item.get_closest_marker("superuser")]
    url = os.environ.get("DATABASE_URL")
    if not marked or not url:
        return
    with psycopg.connect(url) as conn:
        row = conn.execute("select current_user, rolsuper from pg_catalog.pg_roles "
                           "where rolname = current_user").fetchone()
    if row is None or row[1]:
        return
    for item in marked:
        marker = item.get_closest_marker("superuser")
        why = marker.args[0] if marker and marker.args else "superuser only"
        item.add_marker(pytest.mark.skip(
            reason=f"needs a superuser ({why}); {row[0]} is not one here"))


@pytest.fixture(scope="session")
def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.fail("DATABASE_URL is not set: run the tests with `make test`")
    return url


@pytest.fixture(scope="session", autouse=True)
def _pgtap_extension() -> None:
    """pgTAP lives in its own schema, in the test database only, with the helpers
    the pgTAP files share (tests/sql/support.sql, schema test_support). anon and
    authenticated (and service_role, as the mail worker) may call pgTAP and the
    helpers, whatever the database's default privileges (the files switch to
    those roles)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        with psycopg.connect(url, autocommit=True) as conn:
            # On a Citus coordinator these test helpers stay on it (a custom
            # setting that plain PostgreSQL accepts and ignores).
            conn.execute("set citus.enable_ddl_propagation = off")
            conn.execute("create extension if not exists pgtap")
            conn.execute((ROOT / "tests" / "sql" / "support.sql").read_text())
            conn.execute(
                """do $grant$
                declare
                    v_schema name;
                begin
                    foreach v_schema in array array[
                        (select e.extnamespace::regnamespace::name
                         from pg_catalog.pg_extension e where e.extname = 'pgtap'),
                        'test_support']
                    loop
                        execute format('grant usage on schema %I '
                                       'to anon, authenticated, service_role', v_schema);
                        execute format(
                            'grant execute on all functions in schema %I '
                            'to anon, authenticated, service_role',
                            v_schema);
                    end loop;
                end
                $grant$"""
            )


@pytest.fixture
def admin(database_url: str) -> Iterator[psycopg.Connection]:
    """A superuser connection (autocommit) for arranging and inspecting rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@dataclass(frozen=True)
class User:
    id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


# Whether auth.users has Supabase's email_confirmed_at.
CONFIRMABLE = """select exists (select from pg_attribute where attrelid = 'auth.users'::regclass
                 and attname = 'email_confirmed_at' and not attisdropped)"""


def create_user(database_url: str, display_name: str | None = None) -> User:
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    meta = {"display_name": display_name} if display_name else {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        # As Supabase Auth inserts: its auth.users has no default for id.
        row = conn.execute(
            "insert into auth.users (id, email, raw_user_meta_data, created_at, updated_at) "
            "values (gen_random_uuid(), %s, %s, now(), now()) returning id",
            (email, psycopg.types.json.Jsonb(meta)),
        ).fetchone()
        assert row is not None
        # On Supabase (make test-supabase) an address counts once it is confirmed
        # (private.confirmed_email): these users confirmed theirs.
        if conn.execute(CONFIRMABLE).fetchone() == (True,):
            conn.execute("update auth.users set email_confirmed_at = now() where id = %s",
                         (row[0],))
    user_id = str(row[0])
    return User(user_id, email, mint(JWT_SECRET, user_id, email=email))


@pytest.fixture
def make_user(database_url: str) -> Callable[..., User]:
    def factory(display_name: str | None = None) -> User:
        return create_user(database_url, display_name)

    return factory


JS_DIR = ROOT / "tests" / "js"
NPM_TIMEOUT = 300


def install_js(ready: Callable[[], bool]) -> None:
    """tests/js installed (npm ci) unless `ready()` already: under a lock on the
    folder, so that two test runs of one clone at once do not install over each
    other (npm ci first deletes node_modules); the second finds it done."""
    import fcntl
    import shutil

    if ready():
        return
    npm = shutil.which("npm")
    assert npm is not None, "node is installed but npm is not: cannot install tests/js"
    with (JS_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return
        command = [npm, "ci" if (JS_DIR / "package-lock.json").is_file() else "install",
                   "--no-audit", "--no-fund"]
        done = subprocess.run(command, cwd=JS_DIR, capture_output=True, text=True,
                              timeout=NPM_TIMEOUT)
        assert done.returncode == 0, f"{' '.join(command[1:])} failed:\n{done.stdout}{done.stderr}"
    assert ready(), "npm finished but tests/js is not installed"


def within_one_window(seconds: int, margin: float = 15) -> None:
    """Waits, when needed, until at least `margin` seconds are left in the current
    window of `seconds`, aligned to the epoch as private.audit_refusal aligns its
    windows, so that the refusals a test makes next fall in one window (one audit
    row) however the test's start falls on the clock."""
    left = seconds - time.time() % seconds
    if left < margin:
        time.sleep(left + 0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


def start_gateway(database_url: str, log_path: Path, port: int | None = None,
                  **env: str) -> GatewayProcess:
    """A gateway process on `port`, else on a free port.

    A port found free may be taken by another test run on this machine before the
    gateway binds it. One process (WORKERS=1, the tests' default) binds it alone
    and fails loudly: the next free port is tried. Several workers bind it with
    SO_REUSEPORT, so two such gateways of two runs could share one port silently,
    each answering the other's requests: for them the port is held, by a bound
    socket with SO_REUSEPORT that only they can share, until they listen."""
    if port is not None:
        return _start_gateway(database_url, log_path, port, **env)
    shared = env.get("WORKERS", "1") != "1"  # "" is one worker per core
    for attempt in range(5):
        with socket.socket() as held:
            if shared:
                held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            held.bind(("127.0.0.1", 0))
            free = held.getsockname()[1]
            if not shared:
                held.close()
            try:
                return _start_gateway(database_url, log_path, free, **env)
            except PortTaken:
                if attempt == 4:
                    raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """The gateway could not bind its port: another process holds it."""


def _start_gateway(database_url: str, log_path: Path, port: int, **env: str) -> GatewayProcess:
    environment = {
        **os.environ,
        "GATEWAY_DATABASE_URL": authenticator_url(database_url),
        "JWT_SECRET": JWT_SECRET,
        # As `make test` runs it: development mode (the page tests' development
        # sign-in needs it); tests of production starts pass JOINERY_ENV="".
        "JOINERY_ENV": "development",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "POOL_MAX": "20",
        "WORKERS": "1",  # one process unless a test asks for more (the default is one per core)
        "METRICS_DB_INTERVAL": "0",  # /metrics reads the mail queue at every scrape
        **env,
    }
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=environment,
        stdout=log_file, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text()
            if "address already in use" in log.lower():
                raise PortTaken(f"port {port} is taken:\n{log}")
            raise RuntimeError(f"gateway exited early:\n{log}")
        try:
            # Not a short timeout: a check given up on while a worker still starts is
            # answered later all the same, and counted (test_metrics_workers counts them).
            if httpx.get(f"{url}/healthz", timeout=10).status_code == 200:
                return GatewayProcess(url, process, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"gateway did not become healthy:\n{log_path.read_text()}")


@dataclass
class RunningElsewhere:
    """A gateway process this session did not start: its pid, and whether it runs."""

    pid: int

    def poll(self) -> int | None:
        return None if Path(f"/proc/{self.pid}").exists() else 0


def stop_gateway(gateway: GatewayProcess) -> None:
    gateway.process.terminate()
    try:
        gateway.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        gateway.process.kill()


@pytest.fixture(scope="session")
def gateway(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """One real gateway process (uvicorn) for the whole session; or, when
    TEST_GATEWAY_URL and TEST_GATEWAY_LOG name one started by someone else (the
    PgBouncer test runs the suite through a gateway behind PgBouncer), and
    TEST_GATEWAY_PID its process, that one."""
    url, log = os.environ.get("TEST_GATEWAY_URL"), os.environ.get("TEST_GATEWAY_LOG")
    pid = os.environ.get("TEST_GATEWAY_PID")
    if url and log and pid:
        yield GatewayProcess(url, RunningElsewhere(int(pid)), Path(log))  # type: ignore[arg-type]
        return
    # Straight to PostgreSQL, the suite's own gateway keeps its statements prepared
    # (DB_PREPARED_STATEMENTS=on); the run through PgBouncer (test_pgbouncer) and the
    # gateways other tests start use the default, one simple-query script per call.
    proc = start_gateway(database_url, tmp_path_factory.mktemp("gateway") / "gateway.log",
                         DB_PREPARED_STATEMENTS="on")
    yield proc
    stop_gateway(proc)


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        yield http
