"""Faults: PostgreSQL stopped (immediate shutdown) while requests are in flight.

A second, throwaway cluster is made for this module only (its own initdb, as
scripts/devdb does), migrated, and a gateway started on it with POOL_TIMEOUT=1.
Eight clients loop create group / create invite / join / my_groups while the
cluster is stopped with `pg_ctl stop -m immediate`. Then:

- every request answers (client timeout 10 s): no hang;
- answers turn to 503 within 2 s of the stop, and every request started 2 s
  after the stop is a 503;
- after PostgreSQL starts again the same gateway process serves 200 within 5 s,
  after a short outage (about 3 s) and after a longer one (17 s);
- nothing is half done: every group has its owner's membership, every join
  answered 200 has its membership row, every invite's use_count equals the
  members who joined through it.

The same again with PgBouncer (transaction mode, server_login_retry = 1) between
the gateway and the cluster; the cluster is stopped, not the bouncer.

Measured figures are printed (run pytest with -s to see them).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

import pgbouncer
from conftest import ROOT, GatewayProcess, User, create_user, free_port, start_gateway, stop_gateway

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
RUNS_AS_ROOT = os.geteuid() == 0

CLIENTS = 8
LOAD_BEFORE_STOP = (1.0, 5.0)  # load before the stop: at least 1 s, and 40 answers by 5 s
LOAD_AFTER_STOP = 3.0  # seconds of load while it is down
TURN_TO_503 = 2.0  # promised: answers are 503 within this many seconds of the stop
RECOVERY = 5.0  # promised: 200 again within this many seconds of the start
CLIENT_TIMEOUT = 10.0  # a request taking longer counts as a hang
# A longer outage: past 15 s the pool's reconnection attempts (1, 2, 4, 8 s apart,
# doubling, +-10 %) are next due between 28 and 34 s.
LONG_OUTAGE = 17.0
# The gateway answers 503 once POOL_TIMEOUT + statement timeout + 0.5 s pass
# without an answer: 2 s here.
FAULT_ENV = {"POOL_TIMEOUT": "1", "STATEMENT_TIMEOUT_MS": "500", "POOL_MIN": "2",
             "POOL_MAX": "10"}


# --- a throwaway cluster, as scripts/devdb makes one -----------------------------


class Cluster:
    """initdb / pg_ctl in a private folder: as root, run as `postgres` in a folder
    of the system's temporary directory owned by that user (PostgreSQL refuses to
    run as root). TCP on 127.0.0.1 only, trust authentication."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="joinery-faults-"))
        if RUNS_AS_ROOT:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.folder, postgres.pw_uid, postgres.pw_gid)
        self.folder.chmod(0o700)
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/joinery"

    def _run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        args = [str(PG_BIN / command[0]), *command[1:]]
        if RUNS_AS_ROOT:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def init(self) -> None:
        done = self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                         "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        # fsync off is safe here (the machine does not crash, only PostgreSQL
        # stops); synchronous_commit stays on: a commit answered must survive an
        # immediate shutdown, or the "nothing half-done" checks would be wrong.
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   "-c unix_socket_directories='' -c max_connections=100 "
                   "-c fsync=off -c full_page_writes=off")
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                         "-o", options, "-w", "-t", "30", "start")
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start:\n{done.stdout}{done.stderr}\n"
                               f"{self.server_log()[-3000:]}")

    def stop(self, mode: str = "fast") -> None:
        done = self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed:\n{done.stdout}{done.stderr}")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status").returncode == 0

    def server_log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def migrated_cluster() -> Cluster:
    """A new cluster of this test's own, started, with database joinery migrated.
    The caller removes it."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL not found in {PG_BIN} (run scripts/install-deps)")
    made = Cluster()
    try:
        made.init()
        made.start()
        with psycopg.connect(made.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("create database joinery")
        migrated = subprocess.run(
            [sys.executable, "-m", "gateway", "migrate"], cwd=ROOT, capture_output=True,
            text=True, timeout=120, env={**os.environ, "DATABASE_URL": made.url})
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    except BaseException:
        made.remove()
        raise
    return made


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    made = migrated_cluster()
    try:
        with psycopg.connect(made.url, autocommit=True) as conn:
            # The load creates invites and joins far faster than people do.
            conn.execute("update app.rate_limits set max_attempts = 1000000")
        yield made
    finally:
        made.remove()


@pytest.fixture
def running_cluster(cluster: Cluster) -> Cluster:
    """The cluster, started again if a failed test left it stopped."""
    if not cluster.running():
        cluster.start()
    return cluster


# --- the load -----------------------------------------------------------------


@dataclass
class Answer:
    client: int
    op: str
    started: float
    ended: float
    status: int | str  # an HTTP status, or "timeout" / an exception's name


@dataclass
class Load:
    url: str
    users: list[User]
    answers: list[Answer] = field(default_factory=list)
    groups: list[tuple[str, str]] = field(default_factory=list)  # (group, owner) answered 200
    invites: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, code, group, owner
    joins: list[tuple[str, str, str]] = field(default_factory=list)  # group, user, invite
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, http: httpx.Client, client: int, op: str, method: str, path: str,
                user: User, body: dict | None = None) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = http.request(method, path, json=body, headers=user.headers)
        except httpx.TimeoutException:
            self.answers.append(Answer(client, op, started, time.monotonic(), "timeout"))
            return None
        except httpx.HTTPError as exc:
            self.answers.append(Answer(client, op, started, time.monotonic(),
                                       type(exc).__name__))
            return None
        self.answers.append(Answer(client, op, started, time.monotonic(), response.status_code))
        return response

    def client(self, index: int) -> None:
        me = self.users[index]
        rng = random.Random(index)
        my_group: str | None = None
        step = 0
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT) as http:
            while not self.stop.is_set():
                op = ("create_group", "create_invite", "join", "my_groups")[step % 4]
                step += 1
                if op == "create_group":
                    response = self.request(http, index, op, "POST", "/rest/v1/rpc/create_group",
                                            me, {"name": f"load {index}-{step}"})
                    if response is not None and response.status_code == 200:
                        my_group = response.json()["id"]
                        with self.lock:
                            self.groups.append((my_group, me.id))
                elif op == "create_invite" and my_group is not None:
                    response = self.request(http, index, op, "POST",
                                            f"/api/groups/{my_group}/invite", me, {})
                    if response is not None and response.status_code == 201:
                        invite = response.json()["invite"]
                        with self.lock:
                            self.invites.append(
                                (invite["id"], invite["code"], invite["group_id"], me.id))
                elif op == "join":
                    with self.lock:
                        theirs = [i for i in self.invites[-50:] if i[3] != me.id]
                    if theirs:
                        invite_id, code, group_id, _ = rng.choice(theirs)
                        response = self.request(http, index, op, "POST", "/api/groups/join",
                                                me, {"code": code})
                        if response is not None and response.status_code == 200:
                            with self.lock:
                                self.joins.append((group_id, me.id, invite_id))
                elif op == "my_groups":
                    self.request(http, index, op, "GET", "/rest/v1/rpc/my_groups", me)
                time.sleep(0.005)


@dataclass
class Outcome:
    stop_began: float
    stopped: float
    first_503_after: float
    recovered_after: float
    answers: int
    in_flight_at_stop: int
    statuses: dict[str, int]


def run_fault(gateway: GatewayProcess, cluster: Cluster, users: list[User],
              label: str) -> tuple[Load, Outcome]:
    load = Load(gateway.url, users)
    threads = [threading.Thread(target=load.client, args=(i,), daemon=True)
               for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        began = time.monotonic()
        shortest, longest = LOAD_BEFORE_STOP
        while time.monotonic() - began < longest:
            if time.monotonic() - began >= shortest and sum(
                    1 for a in list(load.answers) if a.status in (200, 201)) >= 5 * CLIENTS:
                break
            time.sleep(0.05)
        stop_began = time.monotonic()
        cluster.stop("immediate")
        stopped = time.monotonic()
        time.sleep(LOAD_AFTER_STOP)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads), "a client is still waiting for an answer"

    health = httpx.get(f"{gateway.url}/healthz", timeout=CLIENT_TIMEOUT)
    assert health.status_code == 503, health.text

    cluster.start()
    started = time.monotonic()
    recovered: float | None = None
    first_user = users[0]
    with httpx.Client(base_url=gateway.url, timeout=CLIENT_TIMEOUT) as http:
        while time.monotonic() - started < RECOVERY + 5:
            response = http.get("/rest/v1/rpc/my_groups", headers=first_user.headers)
            if response.status_code == 200:
                recovered = time.monotonic()
                break
            assert response.status_code == 503, response.text
            time.sleep(0.05)
    assert gateway.process.poll() is None, "the gateway exited"

    answered_503 = [a.ended for a in load.answers if a.status == 503]
    statuses: dict[str, int] = {}
    for answer in load.answers:
        statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
    outcome = Outcome(
        stop_began=stop_began, stopped=stopped,
        first_503_after=(min(answered_503) - stopped) if answered_503 else float("inf"),
        recovered_after=(recovered - started) if recovered is not None else float("inf"),
        answers=len(load.answers),
        in_flight_at_stop=sum(1 for a in load.answers if a.started < stopped < a.ended
                              or a.started < stop_began < a.ended),
        statuses=statuses,
    )
    print(f"\n[{label}] pg_ctl stop -m immediate took {stopped - stop_began:.3f} s; "
          f"first 503 {outcome.first_503_after + stopped - stop_began:.3f} s after it began, "
          f"{outcome.first_503_after:.3f} s after it returned; "
          f"200 again {outcome.recovered_after:.3f} s after pg_ctl start returned; "
          f"{outcome.answers} answers {statuses}, {outcome.in_flight_at_stop} in flight "
          f"at the stop; slowest answer "
          f"{max(a.ended - a.started for a in load.answers):.3f} s")
    if os.environ.get("FAULTS_DEBUG"):  # every answer: client, op, start vs the stop, duration
        for a in sorted(load.answers, key=lambda a: a.started):
            print(f"  {a.client} {a.op:14} {a.started - stop_began:+.3f} "
                  f"{a.ended - a.started:.3f} {a.status}")
    return load, outcome


def check_outcome(load: Load, outcome: Outcome) -> None:
    hung = [a for a in load.answers if not isinstance(a.status, int)]
    assert not hung, f"requests without an answer: {hung[:5]}"
    before = [a for a in load.answers if a.ended < outcome.stop_began]
    assert sum(1 for a in before if a.status in (200, 201)) >= 5 * CLIENTS, \
        f"the load did not get going before the stop: {outcome}"
    unexpected = [a for a in load.answers if a.status not in (200, 201, 503)]
    assert not unexpected, f"answers other than 200/201/503: {unexpected[:10]}"
    assert outcome.first_503_after <= TURN_TO_503, outcome
    late = [a for a in load.answers if a.started >= outcome.stopped + TURN_TO_503]
    assert late, "no request was made two seconds after the stop"
    not_503 = [a for a in late if a.status != 503]
    assert not not_503, f"answers 2 s after the stop that are not 503: {not_503[:10]}"
    slow = [a for a in load.answers if a.ended - a.started > TURN_TO_503 + 1]
    assert not slow, f"answers that took longer than {TURN_TO_503 + 1} s: {slow[:5]}"
    assert outcome.recovered_after <= RECOVERY, outcome


def check_nothing_half_done(url: str, load: Load) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        ownerless = conn.execute(
            "select g.id from app.groups g where not exists (select from app.group_members m "
            "where m.group_id = g.id and m.user_id = g.creator_id and m.role = 'owner')"
        ).fetchall()
        assert ownerless == [], f"groups without their owner's membership: {ownerless[:5]}"
        groups = {str(r[0]) for r in conn.execute("select id from app.groups").fetchall()}
        lost_groups = [g for g, _ in load.groups if g not in groups]
        assert lost_groups == [], f"groups answered 200 but not in the database: {lost_groups}"
        invites = {str(r[0]) for r in conn.execute("select id from app.group_invites").fetchall()}
        lost_invites = [i[0] for i in load.invites if i[0] not in invites]
        assert lost_invites == [], f"invites answered 201 but not in the database: {lost_invites}"
        members = {(str(g), str(u)) for g, u in conn.execute(
            "select group_id, user_id from app.group_members").fetchall()}
        lost_joins = [j for j in load.joins if (j[0], j[1]) not in members]
        assert lost_joins == [], f"joins answered 200 without a membership: {lost_joins[:5]}"
        miscounted = conn.execute(
            "select i.id, i.use_count, (select count(*) from app.group_members m "
            "  where m.invite_id = i.id and m.role <> 'owner') "
            "from app.group_invites i where i.use_count <> (select count(*) "
            "  from app.group_members m where m.invite_id = i.id and m.role <> 'owner')"
        ).fetchall()
        assert miscounted == [], f"invites whose use_count is not their members: {miscounted}"
    print(f"checked {len(groups)} groups, {len(invites)} invites, {len(members)} memberships; "
          f"{len(load.joins)} joins answered 200")


def make_users(url: str) -> list[User]:
    return [create_user(url, f"load {i}") for i in range(CLIENTS)]


# --- the tests ----------------------------------------------------------------


def test_postgres_stopped_under_load(running_cluster: Cluster, tmp_path: Path) -> None:
    users = make_users(running_cluster.url)
    gateway = start_gateway(running_cluster.url, tmp_path / "gateway.log", **FAULT_ENV)
    try:
        pid = gateway.process.pid
        load, outcome = run_fault(gateway, running_cluster, users, "direct")
        assert gateway.process.pid == pid and gateway.process.poll() is None
        check_nothing_half_done(running_cluster.url, load)
        check_outcome(load, outcome)
    finally:
        stop_gateway(gateway)


def test_postgres_stopped_under_load_behind_pgbouncer(running_cluster: Cluster,
                                                      tmp_path: Path) -> None:
    users = make_users(running_cluster.url)
    # After a failed server login PgBouncer waits server_login_retry (15 s by default)
    # before the next: recovering within 5 s needs it lower, whatever the gateway does.
    # query_wait_timeout stays at its default (120 s): bounding a request is the
    # gateway's job (POOL_TIMEOUT, statement timeout).
    with pgbouncer.running_pgbouncer(running_cluster.url,
                                     settings={"server_login_retry": "1"}) as bouncer:
        gateway = start_gateway(running_cluster.url, tmp_path / "gateway.log",
                                GATEWAY_DATABASE_URL=bouncer.authenticator_url,
                                **FAULT_ENV)
        try:
            load, outcome = run_fault(gateway, running_cluster, users, "pgbouncer")
            check_nothing_half_done(running_cluster.url, load)
            check_outcome(load, outcome)
        finally:
            stop_gateway(gateway)


def test_gateway_serves_again_after_a_long_outage(running_cluster: Cluster,
                                                   tmp_path: Path) -> None:
    user = create_user(running_cluster.url)
    gateway = start_gateway(running_cluster.url, tmp_path / "gateway.log", **FAULT_ENV)
    try:
        with httpx.Client(base_url=gateway.url, timeout=CLIENT_TIMEOUT) as http:
            for _ in range(3):
                assert http.get("/rest/v1/rpc/my_groups", headers=user.headers).status_code == 200
            running_cluster.stop("immediate")
            stopped = time.monotonic()
            while time.monotonic() - stopped < LONG_OUTAGE:
                response = http.get("/rest/v1/rpc/my_groups", headers=user.headers)
                assert response.status_code == 503, response.text
                time.sleep(0.5)
            running_cluster.start()
            started = time.monotonic()
            recovered: float | None = None
            while time.monotonic() - started < RECOVERY + 1:
                response = http.get("/rest/v1/rpc/my_groups", headers=user.headers)
                if response.status_code == 200:
                    recovered = time.monotonic() - started
                    break
                assert response.status_code == 503, response.text
                time.sleep(0.05)
        assert gateway.process.poll() is None, "the gateway exited"
        print(f"\n[long outage] {LONG_OUTAGE:.0f} s down: 200 again "
              + (f"{recovered:.3f} s" if recovered is not None else f"not within {RECOVERY + 1} s")
              + " after pg_ctl start returned")
        assert recovered is not None and recovered <= RECOVERY, (
            f"after a {LONG_OUTAGE:.0f} s outage the gateway did not serve within {RECOVERY} s "
            f"of PostgreSQL starting again: its pool waits between reconnection attempts "
            f"twice as long each time")
    finally:
        stop_gateway(gateway)
