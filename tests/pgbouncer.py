"""A PgBouncer for tests: Debian's binary in transaction pool mode, on a free port of
127.0.0.1, in front of one database.

PgBouncer, like PostgreSQL, refuses to run as root: as root it runs as the
`postgres` user (through runuser) from a folder of the system's temporary
directory owned by that user; otherwise as the current user. It runs in the
foreground as a child process, so stopping it is terminating that process.

    with running_pgbouncer(database_url) as bouncer:
        bouncer.authenticator_url   # what the gateway connects to
        bouncer.superuser_url       # the same database as the superuser
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PGBOUNCER = os.environ.get("PGBOUNCER_BIN") or shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
RUNS_AS_ROOT = os.geteuid() == 0


def available() -> bool:
    return os.access(PGBOUNCER, os.X_OK)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Bouncer:
    port: int
    dbname: str
    superuser: str
    process: subprocess.Popen
    folder: Path
    log_path: Path

    def url(self, user: str) -> str:
        return make_conninfo(host="127.0.0.1", port=str(self.port), dbname=self.dbname,
                             user=user, connect_timeout="3")

    @property
    def authenticator_url(self) -> str:
        return self.url("authenticator")

    @property
    def superuser_url(self) -> str:
        return self.url(self.superuser)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def admin(self, command: str) -> list[tuple]:
        """A command of PgBouncer's admin console (SHOW POOLS, ...), as the superuser."""
        conninfo = make_conninfo(host="127.0.0.1", port=str(self.port), dbname="pgbouncer",
                                 user=self.superuser, connect_timeout="3")
        with psycopg.connect(conninfo, autocommit=True, prepare_threshold=None) as conn:
            # The console speaks the simple query protocol only.
            cursor = psycopg.ClientCursor(conn)
            cursor.execute(command)
            return cursor.fetchall() if cursor.description else []


def _folder() -> Path:
    """A private folder PgBouncer's user can read."""
    folder = Path(tempfile.mkdtemp(prefix="joinery-pgbouncer-"))
    if RUNS_AS_ROOT:
        postgres = pwd.getpwnam("postgres")
        os.chown(folder, postgres.pw_uid, postgres.pw_gid)
    folder.chmod(0o700)
    return folder


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    if RUNS_AS_ROOT:
        postgres = pwd.getpwnam("postgres")
        os.chown(path, postgres.pw_uid, postgres.pw_gid)
    path.chmod(0o600)
    return path


def config(database_url: str, port: int, auth_file: Path, *, pool_size: int = 20,
           settings: dict[str, str] | None = None) -> tuple[str, str, str]:
    """The ini text, the database name and the superuser's name for `database_url`."""
    target = conninfo_to_dict(database_url)
    dbname = str(target.get("dbname") or "postgres")
    superuser = str(target.get("user") or "postgres")
    server = " ".join(f"{key}={target[key]}" for key in ("host", "port") if target.get(key))
    options = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": str(auth_file),
        "admin_users": superuser,
        "pool_mode": "transaction",
        "max_client_conn": "200",
        "default_pool_size": str(pool_size),
        "min_pool_size": "0",
        "reserve_pool_size": "0",
        # Transaction mode: no reset query between clients (DISCARD ALL would run
        # after every transaction); the gateway must leave nothing behind itself.
        "server_reset_query": "",
        # libpq sends application_name, which PgBouncer tracks itself; the rest of
        # psycopg's startup packet is user, database and client_encoding.
        # extra_float_digits is what other drivers (JDBC, asyncpg) add.
        "ignore_startup_parameters": "extra_float_digits",
        "pidfile": str(auth_file.parent / "pgbouncer.pid"),
        "logfile": "",
        "log_connections": "0",
        "log_disconnections": "0",
        **(settings or {}),
    }
    lines = [
        "[databases]",
        f"{dbname} = {server} dbname={dbname}",
        "",
        "[pgbouncer]",
        *(f"{key} = {value}" for key, value in options.items()),
        "",
    ]
    return "\n".join(lines), dbname, superuser


@contextlib.contextmanager
def running_pgbouncer(database_url: str, *, pool_size: int = 20,
                      settings: dict[str, str] | None = None,
                      start_timeout: float = 10.0) -> Iterator[Bouncer]:
    """PgBouncer in transaction mode in front of `database_url`'s database, stopped
    and its folder removed on exit. `settings` overrides or adds [pgbouncer] keys."""
    if not available():
        raise RuntimeError(f"PgBouncer not found at {PGBOUNCER} (run scripts/install-deps)")
    folder = _folder()
    superuser = str(conninfo_to_dict(database_url).get("user") or "postgres")
    users = sorted({"authenticator", superuser})
    auth_file = _write(folder, "userlist.txt", "".join(f'"{u}" ""\n' for u in users))
    # A port found free may be taken by another process (another test run on this
    # machine) before PgBouncer binds it: then the next free one.
    for attempt in range(5):
        port = free_port()
        text, dbname, superuser = config(database_url, port, auth_file, pool_size=pool_size,
                                         settings=settings)
        ini = _write(folder, "pgbouncer.ini", text)
        log_path = folder / "pgbouncer.log"
        command = [PGBOUNCER, str(ini)]
        if RUNS_AS_ROOT:
            command = ["runuser", "-u", "postgres", "--", *command]
        with log_path.open("w") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        bouncer = Bouncer(port, dbname, superuser, process, folder, log_path)
        try:
            _wait_ready(bouncer, start_timeout)
            break
        except PortTaken:
            stop(bouncer)
            if attempt == 4:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        except BaseException:
            stop(bouncer)
            shutil.rmtree(folder, ignore_errors=True)
            raise
    try:
        yield bouncer
    finally:
        stop(bouncer)
        shutil.rmtree(folder, ignore_errors=True)


class PortTaken(RuntimeError):
    """PgBouncer could not bind its port: another process holds it."""


def _wait_ready(bouncer: Bouncer, timeout: float) -> None:
    """Until PgBouncer accepts a connection on its port (the database behind it may
    be down: only the listening socket is awaited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bouncer.process.poll() is not None:
            log = bouncer.log()
            if "address already in use" in log.lower():
                raise PortTaken(f"port {bouncer.port} is taken:\n{log}")
            raise RuntimeError(f"PgBouncer exited early:\n{log}")
        # Its own line, not just someone listening there: the port may be another's.
        if f"listening on 127.0.0.1:{bouncer.port}" in bouncer.log() and _listening(bouncer.port):
            return
        time.sleep(0.05)
    stop(bouncer)
    raise RuntimeError(f"PgBouncer did not listen within {timeout} s:\n{bouncer.log()}")


def stop(bouncer: Bouncer) -> None:
    """A bounded stop: SIGTERM to PgBouncer itself, found by its pid file (runuser
    given SIGTERM would wait 2 s before ending its child; it exits with its child),
    then wait until the port is closed; SIGKILL to the process group started here
    after 5 s."""
    process = bouncer.process
    if process.poll() is None:
        pid = _pid(bouncer.folder / "pgbouncer.pid", process) if RUNS_AS_ROOT else None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        else:
            process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(process)
    # runuser may return before PgBouncer has closed its socket.
    deadline = time.monotonic() + 5
    while _listening(bouncer.port):
        if time.monotonic() > deadline:
            _kill_group(process)
            break
        time.sleep(0.05)


def _pid(path: Path, process: subprocess.Popen) -> int | None:
    """PgBouncer's pid from its pid file, when it is in the process group started
    here (so nothing else is ever signalled)."""
    try:
        pid = int(path.read_text().split()[0])
        return pid if os.getpgid(pid) == process.pid else None
    except (OSError, ValueError, IndexError):
        return None


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
