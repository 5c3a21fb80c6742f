"""Realtime over Server-Sent Events (GET /realtime/v1/sse), against a real gateway:
who may subscribe to what, delivery of group_approved, one database listener per
gateway process, heartbeats, and clean disconnects."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from conftest import start_gateway, stop_gateway

if TYPE_CHECKING:
    from conftest import GatewayProcess, User

SSE = "/realtime/v1/sse"
READ_TIMEOUT = 5.0


# --- helpers ------------------------------------------------------------------


def befriend(client: httpx.Client, a: User, b: User) -> None:
    response = client.post("/rest/v1/rpc/request_friend", json={"user_id": b.id},
                           headers=a.headers)
    assert response.status_code == 200, response.text
    response = client.post("/rest/v1/rpc/accept_friend", json={"user_id": a.id},
                           headers=b.headers)
    assert response.status_code == 200, response.text


def create_event(client: httpx.Client, creator: User) -> str:
    response = client.post("/rest/v1/rpc/create_event", json={"title": "Live"},
                           headers=creator.headers)
    assert response.status_code == 200, response.text
    return response.json()["id"]


@dataclass
class Group:
    id: str
    event_id: str
    author: User
    creator: User
    friends: list[User]

    @property
    def members(self) -> list[User]:
        return [self.creator, *self.friends]


def pending_group(client: httpx.Client, make_user: Callable[[], User], friends: int = 1) -> Group:
    """One author (threshold 1), a creator and friends: one approval approves it."""
    author, creator = make_user(), make_user()
    event_id = create_event(client, author)
    pals = [make_user() for _ in range(friends)]
    for pal in pals:
        befriend(client, creator, pal)
    response = client.post(f"/events/{event_id}/like", json={"memberIds": [p.id for p in pals]},
                           headers=creator.headers)
    assert response.status_code == 201, response.text
    return Group(response.json()["id"], event_id, author, creator, pals)


def approve(client: httpx.Client, group: Group) -> dict[str, Any]:
    response = client.post(f"/groups/{group.id}/approve", headers=group.author.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "approved"
    return body


@dataclass
class Frame:
    received: float  # time.perf_counter() when its closing blank line arrived
    event: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)


class Subscriber:
    """An SSE client in a background thread, reading frames until `until(frame)` is
    true (or the read timeout passes); its frames are kept in order."""

    def __init__(self, base_url: str, topics: list[str], user: User | None = None, *,
                 header: bool = False, until: Callable[[Frame], bool] | None = None,
                 token: str | None = None) -> None:
        self.params: list[tuple[str, str]] = [("topic", t) for t in topics]
        self.headers: dict[str, str] = {}
        token = token or (user.token if user else None)
        if token and header:
            self.headers["Authorization"] = f"Bearer {token}"
        elif token:
            self.params.append(("access_token", token))
        self.base_url = base_url
        self.until = until or (lambda frame: False)
        self.frames: list[Frame] = []
        self.status: int | None = None
        self.body: bytes = b""
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.arrived: queue.Queue[Frame] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        try:
            with httpx.Client(base_url=self.base_url, timeout=timeout) as http, \
                    http.stream("GET", SSE, params=self.params, headers=self.headers) as response:
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                if response.status_code != 200:
                    self.body = response.read()
                    return
                frame: Frame | None = None
                for line in response.iter_lines():
                    if frame is None:
                        frame = Frame(0.0)
                    if line == "":
                        frame.received = time.perf_counter()
                        self.frames.append(frame)
                        self.arrived.put(frame)
                        if frame.event == "ready":
                            self.ready.set()
                        if self.until(frame):
                            return
                        frame = None
                    elif line.startswith(":"):
                        frame.comments.append(line[1:].strip())
                    elif line.startswith("event:"):
                        frame.event = line[6:].strip()
                    elif line.startswith("data:"):
                        frame.data += line[5:].strip()
        except BaseException as exc:  # reported to the test by wait()/join()
            self.error = exc
        finally:
            self.ready.set()

    def wait_ready(self) -> None:
        assert self.ready.wait(READ_TIMEOUT + 5), "no response"
        assert self.error is None, repr(self.error)
        assert self.status == 200, (self.status, self.body)
        assert self.frames and self.frames[0].event == "ready", self.frames

    def join(self) -> None:
        self.thread.join(READ_TIMEOUT + 5)
        assert not self.thread.is_alive()
        assert self.error is None, repr(self.error)

    def events(self, name: str) -> list[Frame]:
        return [f for f in self.frames if f.event == name]


def refused(base_url: str, topics: list[str], user: User | None = None, **kw: Any
            ) -> tuple[int, dict[str, Any], httpx.Headers]:
    params = [("topic", t) for t in topics]
    headers = {}
    token = kw.get("token") or (user.token if user else None)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(base_url=base_url, timeout=READ_TIMEOUT) as http:
        response = http.get(SSE, params=params, headers=headers)
    return response.status_code, response.json(), response.headers


def on(name: str) -> Callable[[Frame], bool]:
    return lambda frame: frame.event == name


def local_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets the process `pid` holds (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[9] in inodes:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def listeners(admin: psycopg.Connection, gateway: GatewayProcess) -> int:
    """Database backends that are realtime listeners of this gateway process."""
    ports = sorted(local_ports(gateway.process.pid))
    row = admin.execute(
        "select count(*) from pg_stat_activity "
        "where application_name = 'joinery-realtime' and client_port = any(%s)",
        (ports,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(autouse=True)
def listening(gateway, admin: psycopg.Connection) -> None:
    """The session gateway's listener is connected (it connects just after startup)."""
    deadline = time.monotonic() + 5
    while listeners(admin, gateway) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)


# --- delivery -----------------------------------------------------------------


def test_member_receives_group_approved_on_user_topic(gateway, client: httpx.Client,
                                                      make_user) -> None:
    group = pending_group(client, make_user)
    member = group.friends[0]
    subscriber = Subscriber(gateway.url, [f"user:{member.id}"], member,
                            until=on("group_approved"))  # token in access_token
    subscriber.wait_ready()
    assert subscriber.content_type.startswith("text/event-stream")
    assert subscriber.frames[0].json() == {"topics": [f"user:{member.id}"]}

    sent = time.perf_counter()
    decided = approve(client, group)
    answered = time.perf_counter()
    subscriber.join()

    [frame] = subscriber.events("group_approved")
    data = frame.json()
    assert data["type"] == "group_approved"
    assert data["topic"] == f"user:{member.id}"
    assert data["group_id"] == group.id
    assert data["chat_id"] == decided["chatId"]
    assert data["event_id"] == group.event_id
    notes = client.get("/rest/v1/rpc/my_notifications", headers=member.headers).json()
    assert [n["id"] for n in notes if n["type"] == "group_approved"] == [data["notification_id"]]
    print(f"\nSSE delivery: {(frame.received - answered) * 1000:.1f} ms after the approve "
          f"response, {(frame.received - sent) * 1000:.1f} ms after the request was sent")


def test_group_topic_with_authorization_header(gateway, client: httpx.Client,
                                               make_user) -> None:
    group = pending_group(client, make_user)
    subscriber = Subscriber(gateway.url, [f"group:{group.id}"], group.creator, header=True,
                            until=on("group_approved"))
    subscriber.wait_ready()
    decided = approve(client, group)
    subscriber.join()

    [frame] = subscriber.events("group_approved")
    assert frame.json() == {"type": "group_approved", "topic": f"group:{group.id}",
                            "group_id": group.id, "chat_id": decided["chatId"]}


def test_one_stream_many_topics_only_its_own(gateway, client: httpx.Client, make_user) -> None:
    """Two topics on one stream get both messages; another group's message is not sent."""
    group, other = pending_group(client, make_user), pending_group(client, make_user)
    member = group.friends[0]
    topics = [f"user:{member.id}", f"group:{group.id}"]
    seen: set[str] = set()

    def both(frame: Frame) -> bool:
        if frame.event == "group_approved":
            seen.add(frame.json()["topic"])
        return seen == set(topics)

    subscriber = Subscriber(gateway.url, topics, member, until=both)
    subscriber.wait_ready()
    approve(client, other)
    approve(client, group)
    subscriber.join()
    assert [f.json()["topic"] for f in subscriber.events("group_approved")] in (topics,
                                                                              topics[::-1])
    assert all(f.json()["group_id"] == group.id for f in subscriber.events("group_approved"))


# --- who may subscribe --------------------------------------------------------


def test_subscription_refusals(gateway, client: httpx.Client, make_user) -> None:
    group = pending_group(client, make_user)
    stranger = make_user()

    status, body, _ = refused(gateway.url, [f"group:{group.id}"], stranger)
    assert (status, body["code"]) == (403, "42501")
    assert set(body) == {"code", "message", "details", "hint"}
    status, body, _ = refused(gateway.url, [f"user:{group.creator.id}"], stranger)
    assert (status, body["code"]) == (403, "42501")
    # One forbidden topic among allowed ones refuses the whole stream.
    status, body, _ = refused(gateway.url, [f"user:{stranger.id}", f"group:{group.id}"], stranger)
    assert (status, body["code"]) == (403, "42501")
    status, body, _ = refused(gateway.url, [f"group:{uuid.uuid4()}"], stranger)
    assert (status, body["code"]) == (403, "42501")
    status, body, _ = refused(gateway.url, ["nonsense"], stranger)
    assert (status, body["code"]) == (403, "42501")

    status, body, _ = refused(gateway.url, [], stranger)
    assert (status, body["code"]) == (400, "PGRST100")
    status, body, headers = refused(gateway.url, [f"user:{stranger.id}"])
    assert status == 401, body
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, headers = refused(gateway.url, [f"user:{stranger.id}"], token="not.a.jwt")
    assert status == 401, body
    assert body["code"] == "PGRST301"
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]

    # An invalid token in the query parameter is refused too, never treated as anon.
    bad = Subscriber(gateway.url, [f"user:{stranger.id}"], token="not.a.jwt")
    bad.join()
    assert bad.status == 401
    assert json.loads(bad.body)["code"] == "PGRST301"
    # The stranger's own topic is fine.
    mine = Subscriber(gateway.url, [f"user:{stranger.id}"], stranger, until=on("ready"))
    mine.wait_ready()
    mine.join()


# --- one listener, many subscribers --------------------------------------------


def test_five_subscribers_one_listener(gateway, client: httpx.Client, make_user,
                                       admin: psycopg.Connection) -> None:
    group = pending_group(client, make_user, friends=4)
    subscribers = [Subscriber(gateway.url, [f"user:{m.id}"], m, until=on("group_approved"))
                   for m in group.members]
    for subscriber in subscribers:
        subscriber.wait_ready()

    # However many streams are open, the gateway process holds one listening backend.
    assert listeners(admin, gateway) == 1
    row = admin.execute("select count(*) from pg_stat_activity "
                        "where application_name = 'joinery-realtime'").fetchone()
    assert row is not None and row[0] >= 1

    decided = approve(client, group)
    for member, subscriber in zip(group.members, subscribers, strict=True):
        subscriber.join()
        [frame] = subscriber.events("group_approved")
        assert frame.json()["topic"] == f"user:{member.id}"
        assert frame.json()["chat_id"] == decided["chatId"]
    assert listeners(admin, gateway) == 1


def test_heartbeat(database_url: str, tmp_path: Path, make_user,
                   admin: psycopg.Connection) -> None:
    proc = start_gateway(database_url, tmp_path / "heartbeat.log", SSE_HEARTBEAT="0.5")
    try:
        user = make_user()
        beats_seen = Counter[str]()

        def two_beats(frame: Frame) -> bool:
            beats_seen.update(frame.comments)
            return beats_seen["heartbeat"] >= 2

        subscriber = Subscriber(proc.url, [f"user:{user.id}"], user, until=two_beats)
        subscriber.wait_ready()
        subscriber.join()
        beats = [f for f in subscriber.frames if f.comments]
        assert len(beats) == 2
        assert all(f.comments == ["heartbeat"] and f.event is None for f in beats)
        # Two heartbeats 0.5 s apart, well within the 5 s read timeout.
        assert beats[1].received - subscriber.frames[0].received < 3
        deadline = time.monotonic() + 5
        while listeners(admin, proc) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listeners(admin, proc) == 1
    finally:
        stop_gateway(proc)
    assert proc.process.returncode is not None
    assert "Traceback" not in proc.log()


# --- disconnects ----------------------------------------------------------------


def ended_streams(log: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("route") == SSE:
                lines.append(entry)
    return lines


def test_disconnects_are_clean(gateway, client: httpx.Client, make_user) -> None:
    start = len(gateway.log())
    user = make_user()
    # Clients that go away: after the ready frame, and right after connecting.
    early = [Subscriber(gateway.url, [f"user:{user.id}"], user, until=on("ready"))
             for _ in range(5)]
    for subscriber in early:
        subscriber.wait_ready()
        subscriber.join()
    with httpx.Client(base_url=gateway.url, timeout=READ_TIMEOUT) as http, \
            http.stream("GET", SSE, params={"topic": f"user:{user.id}"},
                        headers={"Authorization": f"Bearer {user.token}"}) as response:
        assert response.status_code == 200  # closed without reading a byte

    group = pending_group(client, make_user)
    member = group.friends[0]
    later = Subscriber(gateway.url, [f"user:{member.id}"], member, until=on("group_approved"))
    later.wait_ready()
    decided = approve(client, group)
    later.join()
    [frame] = later.events("group_approved")
    assert frame.json()["chat_id"] == decided["chatId"]

    # Each stream's handler ends when its client goes away (the access log line is
    # written when the handler returns): all seven, not only the next request.
    deadline = time.monotonic() + 5
    while len(ended_streams(gateway.log()[start:])) < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    log = gateway.log()[start:]
    assert [line["status"] for line in ended_streams(log)] == [200] * 7, log
    assert "Traceback" not in log, log
    assert "Exception in ASGI application" not in log, log
    assert client.get("/healthz").status_code == 200


def test_listener_database_is_the_gateway_database(gateway, admin: psycopg.Connection,
                                                   database_url: str) -> None:
    """The listening backend is connected to the same database as the API."""
    ports = sorted(local_ports(gateway.process.pid))
    rows = admin.execute(
        "select datname, usename, query from pg_stat_activity "
        "where application_name = 'joinery-realtime' and client_port = any(%s)",
        (ports,)).fetchall()
    assert len(rows) == 1
    datname, usename, query = rows[0]
    assert datname == conninfo_to_dict(database_url)["dbname"]
    assert usename == "authenticator"
    # Its last statement is one of its two LISTENs (realtime, then schema changes).
    assert query.strip().lower() in ("listen joinery_realtime", "listen joinery_schema")
