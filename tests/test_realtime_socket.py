"""/realtime/v1/websocket (Supabase Realtime's Phoenix-channel protocol) frame by
frame, against a real gateway: both serializers, joins authorised by
api.can_subscribe, broadcasts at approval, refusals that leave the socket open,
token refresh and expiry, leave, the limits, and one listener per process."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import psycopg
import pytest
from test_realtime import approve, listeners, local_ports, pending_group
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from conftest import JWT_SECRET, start_gateway, stop_gateway
from gateway.jwt_auth import mint

if TYPE_CHECKING:
    from conftest import GatewayProcess

WAIT = 5.0
# The project's public key, as supabase-js sends it: an anon JWT.
ANON_KEY = mint(JWT_SECRET, None, role="anon", expires_in=10 * 365 * 86400)


class Phoenix:
    """A bare Phoenix-channel client over one socket, either serializer."""

    def __init__(self, base_url: str, apikey: str = ANON_KEY, vsn: str | None = "2.0.0",
                 query: dict[str, str] | None = None) -> None:
        params = {"apikey": apikey, **({"vsn": vsn} if vsn else {}), **(query or {})}
        url = base_url.replace("http://", "ws://") + "/realtime/v1/websocket?" + \
            urllib.parse.urlencode(params)
        self.vsn = vsn or "1.0.0"
        self.ws: ClientConnection = connect(url, open_timeout=WAIT, max_size=None)
        self.ref = 0
        self.backlog: list[list[Any]] = []

    def send(self, topic: str, event: str, payload: dict[str, Any],
             join_ref: str | None = None) -> str:
        self.ref += 1
        ref = str(self.ref)
        if self.vsn == "2.0.0":
            self.ws.send(json.dumps([join_ref, ref, topic, event, payload]))
        else:
            self.ws.send(json.dumps({"join_ref": join_ref, "ref": ref, "topic": topic,
                                     "event": event, "payload": payload}))
        return ref

    def receive(self, timeout: float = WAIT) -> list[Any]:
        """The next frame as [join_ref, ref, topic, event, payload]."""
        if self.backlog:
            return self.backlog.pop(0)
        raw = self.ws.recv(timeout=timeout)
        assert isinstance(raw, str), raw
        value = json.loads(raw)
        if self.vsn == "2.0.0":
            assert isinstance(value, list) and len(value) == 5, value
            return value
        assert isinstance(value, dict), value
        assert set(value) == {"join_ref", "ref", "topic", "event", "payload"}, value
        return [value["join_ref"], value["ref"], value["topic"], value["event"],
                value["payload"]]

    def reply_to(self, ref: str, timeout: float = WAIT) -> list[Any]:
        """The phx_reply to `ref`; other frames are kept for later."""
        deadline = time.monotonic() + timeout
        for i, frame in enumerate(self.backlog):
            if frame[3] == "phx_reply" and frame[1] == ref:
                return self.backlog.pop(i)
        while True:
            frame = self.receive(max(0.01, deadline - time.monotonic()))
            if frame[3] == "phx_reply" and frame[1] == ref:
                return frame
            self.backlog.append(frame)

    def join(self, topic: str, token: str | None, private: bool = True,
             **config: Any) -> tuple[str, list[Any]]:
        payload: dict[str, Any] = {"config": {
            "broadcast": {"ack": False, "self": False},
            "presence": {"key": "", "enabled": False},
            "postgres_changes": [], "private": private, **config}}
        if token is not None:
            payload["access_token"] = token
        self.ref += 1
        ref = str(self.ref)
        frame = [ref, ref, f"realtime:{topic}", "phx_join", payload]
        if self.vsn == "2.0.0":
            self.ws.send(json.dumps(frame))
        else:
            self.ws.send(json.dumps(dict(zip(
                ["join_ref", "ref", "topic", "event", "payload"], frame, strict=True))))
        return ref, self.reply_to(ref)

    def heartbeat(self) -> list[Any]:
        return self.reply_to(self.send("phoenix", "heartbeat", {}))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def sockets() -> Iterator[list[Phoenix]]:
    opened: list[Phoenix] = []
    yield opened
    for sock in opened:
        sock.close()


def joined_ok(sock: Phoenix, topic: str, token: str) -> str:
    ref, reply = sock.join(topic, token)
    assert reply == [ref, ref, f"realtime:{topic}", "phx_reply",
                     {"status": "ok", "response": {"postgres_changes": []}}], reply
    return ref


def refused(sock: Phoenix, topic: str, token: str | None, reason: str, **kw: Any) -> None:
    ref, reply = sock.join(topic, token, **kw)
    assert reply == [ref, ref, f"realtime:{topic}", "phx_reply",
                     {"status": "error", "response": {"reason": reason}}], reply


def heartbeat_ok(sock: Phoenix) -> None:
    reply = sock.heartbeat()
    assert reply == [None, str(sock.ref), "phoenix", "phx_reply",
                     {"status": "ok", "response": {}}], reply


# --- delivery, both serializers -------------------------------------------------


@pytest.mark.parametrize("vsn", ["2.0.0", "1.0.0", None])
def test_member_receives_broadcast(vsn: str | None, gateway: GatewayProcess,
                                   client: httpx.Client, make_user, sockets) -> None:
    group = pending_group(client, make_user)
    member = group.friends[0]
    sock = Phoenix(gateway.url, member.token, vsn)  # no vsn: Phoenix's default, 1.0.0
    sockets.append(sock)
    heartbeat_ok(sock)
    group_ref = joined_ok(sock, f"group:{group.id}", member.token)
    user_ref = joined_ok(sock, f"user:{member.id}", member.token)

    decided = approve(client, group)
    frames = [sock.receive(), sock.receive()]
    by_topic = {f[2]: f for f in frames}
    assert by_topic[f"realtime:group:{group.id}"] == [
        group_ref, None, f"realtime:group:{group.id}", "broadcast",
        {"type": "broadcast", "event": "group_approved", "payload": {
            "type": "group_approved", "topic": f"group:{group.id}", "group_id": group.id,
            "chat_id": decided["chatId"]}}]
    user_frame = by_topic[f"realtime:user:{member.id}"]
    assert user_frame[:4] == [user_ref, None, f"realtime:user:{member.id}", "broadcast"]
    payload = user_frame[4]
    assert payload["type"] == "broadcast" and payload["event"] == "group_approved"
    notes = client.get("/rest/v1/rpc/my_notifications", headers=member.headers).json()
    assert payload["payload"] == {
        "type": "group_approved", "topic": f"user:{member.id}", "group_id": group.id,
        "event_id": group.event_id, "chat_id": decided["chatId"],
        "notification_id": next(n["id"] for n in notes if n["type"] == "group_approved")}
    heartbeat_ok(sock)


def test_apikey_jwt_stands_in_for_access_token(gateway: GatewayProcess, make_user,
                                               sockets) -> None:
    user = make_user()
    sock = Phoenix(gateway.url, user.token)
    sockets.append(sock)
    joined_ok(sock, f"user:{user.id}", None)  # type: ignore[arg-type]


# --- refusals: a reply, and the socket stays open ----------------------------------


def test_refused_joins_say_why(gateway: GatewayProcess, client: httpx.Client, make_user,
                               sockets) -> None:
    group = pending_group(client, make_user)
    stranger = make_user()
    sock = Phoenix(gateway.url)
    sockets.append(sock)
    refused(sock, f"group:{group.id}", stranger.token,
            "Unauthorized: You do not have permissions to read from this Channel topic: "
            f"group:{group.id}")
    refused(sock, f"user:{group.creator.id}", stranger.token,
            "Unauthorized: You do not have permissions to read from this Channel topic: "
            f"user:{group.creator.id}")
    refused(sock, "lobby", stranger.token,
            "Unauthorized: You do not have permissions to read from this Channel topic: lobby")
    refused(sock, f"user:{stranger.id}", stranger.token,
            "PrivateOnly: this server only serves private channels "
            "(create the channel with { config: { private: true } })", private=False)
    refused(sock, f"user:{stranger.id}", stranger.token,
            "postgres_changes is not supported by this server: listen to broadcast events "
            "on a private channel",
            postgres_changes=[{"event": "*", "schema": "public", "table": "x"}])
    refused(sock, f"user:{stranger.id}", stranger.token,
            "presence is not supported by this server", presence={"key": "", "enabled": True})
    # Within the verifier's 30 s leeway and past it, the same refusal.
    for seconds in (10, 120):
        expired = mint(JWT_SECRET, stranger.id, expires_in=-seconds)
        ref, reply = sock.join(f"user:{stranger.id}", expired)
        assert reply[:4] == [ref, ref, f"realtime:user:{stranger.id}", "phx_reply"]
        assert reply[4]["status"] == "error"
        assert re.fullmatch(r"InvalidJWTToken: Token has expired (\d+) seconds ago",
                            reply[4]["response"]["reason"]), reply
        assert int(reply[4]["response"]["reason"].split()[-3]) in (seconds, seconds + 1)
    refused(sock, f"user:{stranger.id}", "not.a.jwt", "InvalidJWTToken: malformed token")
    # No access_token: the socket's apikey (the anon key) stands in, and anon may not.
    refused(sock, f"user:{stranger.id}", None, "Unauthorized: You do not have permissions "
            f"to read from this Channel topic: user:{stranger.id}")
    anon = mint(JWT_SECRET, None, role="anon")
    refused(sock, f"user:{stranger.id}", anon, "Unauthorized: You do not have permissions "
            f"to read from this Channel topic: user:{stranger.id}")
    refused(sock, "", stranger.token, "TopicNameRequired: You must provide a topic name")
    ref = sock.send("room:lobby", "phx_join", {"config": {"private": True}})
    assert sock.reply_to(ref) == [None, ref, "room:lobby", "phx_reply",
                                  {"status": "error", "response": {"reason": "unmatched topic"}}]
    ref = sock.send(f"realtime:user:{stranger.id}", "broadcast", {})
    assert sock.reply_to(ref)[4] == {"status": "error", "response": {"reason": "unmatched topic"}}
    heartbeat_ok(sock)


def test_unsupported_pushes_get_error_replies(gateway: GatewayProcess, make_user,
                                              sockets) -> None:
    user = make_user()
    topic = f"realtime:user:{user.id}"
    sock = Phoenix(gateway.url)
    sockets.append(sock)
    join_ref = joined_ok(sock, f"user:{user.id}", user.token)
    no_broadcast = {"status": "error", "response": {"reason": (
        "client broadcasts are not supported by this server: only the server broadcasts "
        "on these channels")}}
    ref = sock.send(topic, "presence", {"type": "presence", "event": "track", "payload": {}},
                    join_ref)
    assert sock.reply_to(ref) == [join_ref, ref, topic, "phx_reply", {
        "status": "error", "response": {"reason": "presence is not supported by this server"}}]
    ref = sock.send(topic, "broadcast", {"type": "broadcast", "event": "x", "payload": {}},
                    join_ref)
    assert sock.reply_to(ref) == [join_ref, ref, topic, "phx_reply", no_broadcast]
    # supabase-js (vsn 2.0.0) sends client broadcasts as binary frames: kind 3, the
    # lengths of join_ref, ref, topic, event and metadata, the encoding, then the fields.
    ref = "77"
    header = bytes([3, len(join_ref), len(ref), len(topic), 1, 0, 1])
    sock.ws.send(header + join_ref.encode() + ref.encode() + topic.encode() + b"x" + b"{}")
    assert sock.reply_to(ref) == [join_ref, ref, topic, "phx_reply", no_broadcast]
    ref = sock.send(topic, "whatever", {}, join_ref)
    assert sock.reply_to(ref)[4] == {"status": "error",
                                     "response": {"reason": "unknown event 'whatever'"}}
    sock.ws.send("not json")  # nothing to answer to: ignored
    sock.ws.send(json.dumps({"a": 1}))
    heartbeat_ok(sock)


# --- token refresh and expiry, leave ------------------------------------------------


def test_access_token_refresh_keeps_or_ends_the_channel(gateway: GatewayProcess,
                                                        client: httpx.Client, make_user,
                                                        sockets) -> None:
    group = pending_group(client, make_user, friends=2)
    member, other = group.friends
    sock = Phoenix(gateway.url)
    sockets.append(sock)
    topic = f"realtime:group:{group.id}"
    join_ref = joined_ok(sock, f"group:{group.id}", member.token)
    fresh = mint(JWT_SECRET, member.id, expires_in=7200)
    sock.send(topic, "access_token", {"access_token": fresh}, join_ref)
    heartbeat_ok(sock)  # no reply to access_token (as Supabase), and no close
    decided = approve(client, group)
    frame = sock.receive()
    assert frame[:4] == [join_ref, None, topic, "broadcast"]
    assert frame[4]["payload"]["chat_id"] == decided["chatId"]

    # A token of someone who may not see the group (another user's) ends the channel.
    stranger = make_user()
    sock.send(topic, "access_token", {"access_token": stranger.token}, join_ref)
    assert sock.receive() == [join_ref, None, topic, "system", {
        "extension": "system", "status": "error",
        "message": "Unauthorized: You do not have permissions to read from this Channel "
                   f"topic: group:{group.id}", "channel": f"group:{group.id}"}]
    assert sock.receive() == [join_ref, join_ref, topic, "phx_close", {}]
    ref = sock.send(topic, "access_token", {"access_token": fresh}, join_ref)
    assert sock.reply_to(ref)[4] == {"status": "error", "response": {"reason": "unmatched topic"}}
    heartbeat_ok(sock)
    del other


def test_expired_refresh_and_expiry_end_the_channel(gateway: GatewayProcess, make_user,
                                                    sockets) -> None:
    user = make_user()
    sock = Phoenix(gateway.url)
    sockets.append(sock)
    topic = f"realtime:user:{user.id}"
    join_ref = joined_ok(sock, f"user:{user.id}", user.token)
    sock.send(topic, "access_token",
              {"access_token": mint(JWT_SECRET, user.id, expires_in=-10)}, join_ref)
    system = sock.receive()
    assert system[:4] == [join_ref, None, topic, "system"]
    assert system[4]["message"] in ("InvalidJWTToken: Token has expired 10 seconds ago",
                                    "InvalidJWTToken: Token has expired 11 seconds ago")
    assert sock.receive() == [join_ref, join_ref, topic, "phx_close", {}]

    # A channel ends by itself at its token's exp.
    short = mint(JWT_SECRET, user.id, expires_in=2)
    exp = jwt.decode(short, options={"verify_signature": False})["exp"]
    join_ref = joined_ok(sock, f"user:{user.id}", short)
    assert sock.receive(timeout=6) == [join_ref, None, topic, "system", {
        "extension": "system", "status": "error", "message": "InvalidJWTToken: Token has expired",
        "channel": f"user:{user.id}"}]
    assert exp <= time.time() < exp + 3  # at exp, not before
    assert sock.receive() == [join_ref, join_ref, topic, "phx_close", {}]
    heartbeat_ok(sock)


def test_leave_stops_delivery(gateway: GatewayProcess, client: httpx.Client, make_user,
                              sockets) -> None:
    group = pending_group(client, make_user)
    member = group.friends[0]
    sock = Phoenix(gateway.url)
    sockets.append(sock)
    topic = f"realtime:group:{group.id}"
    join_ref = joined_ok(sock, f"group:{group.id}", member.token)
    ref = sock.send(topic, "phx_leave", {}, join_ref)
    assert sock.reply_to(ref) == [join_ref, ref, topic, "phx_reply",
                                  {"status": "ok", "response": {}}]
    approve(client, group)
    heartbeat_ok(sock)  # the heartbeat reply is the next frame: no broadcast came
    with pytest.raises(TimeoutError):
        sock.receive(timeout=0.5)


def test_one_listener_for_sockets_and_streams(gateway: GatewayProcess, client: httpx.Client,
                                              make_user, admin: psycopg.Connection,
                                              sockets) -> None:
    group = pending_group(client, make_user)
    for member in group.members:
        sock = Phoenix(gateway.url)
        sockets.append(sock)
        joined_ok(sock, f"group:{group.id}", member.token)
    assert listeners(admin, gateway) == 1
    decided = approve(client, group)
    for sock in sockets:
        assert sock.receive()[4]["payload"]["chat_id"] == decided["chatId"]
    assert listeners(admin, gateway) == 1


# --- limits -----------------------------------------------------------------------------


@pytest.fixture
def limited(database_url: str, tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = start_gateway(database_url, tmp_path / "limited.log", REALTIME_MAX_SOCKETS="3",
                         REALTIME_CHANNELS_PER_SOCKET="2", REALTIME_MAX_FRAME_BYTES="2048",
                         REALTIME_IDLE_TIMEOUT="1.5", REALTIME_PER_USER="3")
    yield proc
    stop_gateway(proc)
    assert "Traceback" not in proc.log(), proc.log()


def closed_with(sock: Phoenix, code: int, reason: str) -> None:
    with pytest.raises(ConnectionClosed) as caught:
        sock.receive(timeout=WAIT)
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (code, reason)


def test_socket_limits(limited: GatewayProcess, make_user, sockets) -> None:
    a, b = make_user(), make_user()
    first = Phoenix(limited.url)
    sockets.append(first)
    joined_ok(first, f"user:{a.id}", a.token)
    joined_ok(first, f"user:{b.id}", b.token)
    refused(first, f"user:{a.id}x", a.token,
            "ChannelRateLimitReached: Too many channels (at most 2 on one socket)")
    # Per user: a's channels on every socket count together (3 at most).
    second = Phoenix(limited.url)
    sockets.append(second)
    joined_ok(second, f"user:{a.id}", a.token)
    joined_ok(second, f"user:{b.id}", b.token)
    third = Phoenix(limited.url)
    sockets.append(third)
    joined_ok(third, f"user:{a.id}", a.token)
    c = make_user()
    refused(third, f"group:{c.id}", mint(JWT_SECRET, a.id),
            "ConnectionRateLimitReached: Too many realtime subscriptions for this user "
            "(at most 3 per process).")
    # Per process: a fourth socket may open (pending), but its first join is
    # refused and it is closed, saying why.
    fourth = Phoenix(limited.url)
    sockets.append(fourth)
    heartbeat_ok(fourth)
    refused(fourth, f"user:{c.id}", c.token,
            "ConnectionRateLimitReached: too many sockets on this server; try again later")
    closed_with(fourth, 1013, "too many sockets on this server; try again later")
    # Leaving frees a's slot.
    topic = f"realtime:user:{a.id}"
    ref = first.send(topic, "phx_leave", {}, None)
    assert first.reply_to(ref)[4]["status"] == "ok"
    joined_ok(third, f"user:{c.id}", c.token)
    heartbeat_ok(third)


def test_frame_size_and_idle_limits(limited: GatewayProcess, make_user, sockets) -> None:
    user = make_user()
    big = Phoenix(limited.url)
    sockets.append(big)
    big.send("phoenix", "heartbeat", {"junk": "x" * 4096})
    # uvicorn (websockets) refuses it before the app reads it.
    closed_with(big, 1009, "frame exceeds limit of 2048 bytes")

    idle = Phoenix(limited.url)
    sockets.append(idle)
    started = time.monotonic()
    closed_with(idle, 1000, "idle timeout")
    assert 1.0 < time.monotonic() - started < 4

    # Heartbeats keep a socket open well past the idle limit.
    busy = Phoenix(limited.url)
    sockets.append(busy)
    joined_ok(busy, f"user:{user.id}", user.token)
    until = time.monotonic() + 4
    while time.monotonic() < until:
        heartbeat_ok(busy)
        time.sleep(0.5)
    # ... but not a socket that joins nothing: it holds no slot of any user.
    empty = Phoenix(limited.url)
    sockets.append(empty)
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as caught:
        while time.monotonic() - started < 4:
            heartbeat_ok(empty)
            time.sleep(0.5)
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (1000, "no channel joined")
    assert 1.0 < time.monotonic() - started < 6
    with httpx.Client(base_url=limited.url) as http:
        assert http.get("/healthz").status_code == 200


def test_bad_handshakes_are_closed_with_a_reason(gateway: GatewayProcess, sockets) -> None:
    sock = Phoenix(gateway.url, vsn="3.0.0")
    sockets.append(sock)
    closed_with(sock, 1008, "unsupported vsn '3.0.0': use 1.0.0 or 2.0.0")
    sock = Phoenix(gateway.url, apikey="")
    sockets.append(sock)
    closed_with(sock, 1008, "the apikey query parameter is required")


def test_lost_listener_closes_sockets_so_clients_rejoin(database_url: str, tmp_path: Path,
                                                        admin: psycopg.Connection,
                                                        make_user, sockets) -> None:
    """Messages published while the database listener was away would be missed:
    the socket is closed (1011) so that the client reconnects and rejoins."""
    proc = start_gateway(database_url, tmp_path / "lost.log")
    try:
        user = make_user()
        sock = Phoenix(proc.url)
        sockets.append(sock)
        joined_ok(sock, f"user:{user.id}", user.token)
        ports = sorted(local_ports(proc.process.pid))
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                      "where application_name = 'joinery-realtime' and client_port = any(%s)",
                      (ports,))
        closed_with(sock, 1011, "messages may have been missed: reconnect")
        again = Phoenix(proc.url)
        sockets.append(again)
        joined_ok(again, f"user:{user.id}", user.token)  # waits for the listener
        heartbeat_ok(again)
    finally:
        stop_gateway(proc)
    assert "Traceback" not in proc.log(), proc.log()


# --- sockets before their first channel (pending) --------------------------------------


def upgrade_refused(base_url: str, apikey: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """The HTTP answer to an upgrade that is refused before it is accepted."""
    with pytest.raises(InvalidStatus) as caught:
        Phoenix(base_url, apikey=apikey)
    response = caught.value.response
    return response.status_code, dict(response.headers), json.loads(response.body)


def test_an_apikey_that_is_not_a_valid_jwt_is_refused_at_the_upgrade(
        gateway: GatewayProcess) -> None:
    for apikey, code, message in [
        ("x", "PGRST301", "apikey must be a JWT"),
        ("not.a.jwt", "PGRST301", "malformed token"),
        (mint("another-secret-0123456789-0123456789-0123", None, role="anon"), "PGRST301",
         "invalid signature"),
    ]:
        status, headers, body = upgrade_refused(gateway.url, apikey)
        assert (status, body) == (401, {"code": code, "message": message, "details": None,
                                        "hint": None}), apikey
        assert headers["www-authenticate"] == (
            f'Bearer error="invalid_token", error_description="{message}"')
    # An expired token as apikey opens a pending socket: a join with a fresh token
    # may still come (a join with the expired one is refused, saying so).
    sock = Phoenix(gateway.url, apikey=mint(JWT_SECRET, None, role="anon", expires_in=-120))
    try:
        heartbeat_ok(sock)
    finally:
        sock.close()


@pytest.fixture
def few_pending(database_url: str, tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = start_gateway(database_url, tmp_path / "pending.log", REALTIME_MAX_PENDING_SOCKETS="4",
                         REALTIME_MAX_SOCKETS="1", REALTIME_JOIN_TIMEOUT="2")
    yield proc
    stop_gateway(proc)
    assert "Traceback" not in proc.log(), proc.log()


def gauges(base_url: str) -> dict[str, float]:
    text = httpx.get(f"{base_url}/metrics").text
    return {name: float(value) for name, value in re.findall(
        r"^joinery_(realtime_(?:pending_)?sockets) (\S+)$", text, re.M)}


def test_token_less_sockets_cannot_keep_a_signed_in_user_out(
        few_pending: GatewayProcess, make_user, sockets) -> None:
    with httpx.Client(base_url=few_pending.url, timeout=30) as http:
        group = pending_group(http, make_user)
    member = group.friends[0]
    # The pending cap filled by sockets with the public key and no token of their own.
    idle = [Phoenix(few_pending.url) for _ in range(4)]
    sockets.extend(idle)
    for sock in idle:
        heartbeat_ok(sock)
    assert gauges(few_pending.url) == {"realtime_sockets": 0, "realtime_pending_sockets": 4}
    # A signed-in user's socket takes the place of the oldest, joins and is counted.
    mine = Phoenix(few_pending.url)
    sockets.append(mine)
    closed_with(idle[0], 1013, "too many sockets waiting to join; try again later")
    ref = joined_ok(mine, f"group:{group.id}", member.token)
    assert gauges(few_pending.url) == {"realtime_sockets": 1, "realtime_pending_sockets": 3}
    with httpx.Client(base_url=few_pending.url, timeout=30) as http:
        decided = approve(http, group)
    assert mine.receive() == [
        ref, None, f"realtime:group:{group.id}", "broadcast",
        {"type": "broadcast", "event": "group_approved", "payload": {
            "type": "group_approved", "topic": f"group:{group.id}", "group_id": group.id,
            "chat_id": decided["chatId"]}}]
    # The pending ones are closed at the join deadline, heartbeats or not.
    for sock in idle[1:]:
        closed_with(sock, 1000, "no channel joined")
    heartbeat_ok(mine)
    # Leaving its last channel makes a socket pending again (REALTIME_MAX_SOCKETS is 1:
    # another socket can now be counted).
    assert mine.reply_to(mine.send(f"realtime:group:{group.id}", "phx_leave", {}))[4] == {
        "status": "ok", "response": {}}
    assert gauges(few_pending.url) == {"realtime_sockets": 0, "realtime_pending_sockets": 1}
    other = Phoenix(few_pending.url)
    sockets.append(other)
    joined_ok(other, f"user:{member.id}", member.token)
    refused(mine, f"group:{group.id}", member.token,
            "ConnectionRateLimitReached: too many sockets on this server; try again later")
    closed_with(mine, 1013, "too many sockets on this server; try again later")


def test_join_deadline(few_pending: GatewayProcess, sockets) -> None:
    sock = Phoenix(few_pending.url)
    sockets.append(sock)
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as caught:
        while True:
            heartbeat_ok(sock)
            time.sleep(0.3)
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (1000, "no channel joined")
    assert 1.9 < time.monotonic() - started < 4


def test_a_socket_with_a_user_token_as_apikey_is_counted_at_once(
        few_pending: GatewayProcess, make_user, sockets) -> None:
    with httpx.Client(base_url=few_pending.url, timeout=30) as http:
        group = pending_group(http, make_user)
    member = group.friends[0]
    idle = [Phoenix(few_pending.url) for _ in range(4)]
    sockets.extend(idle)
    for sock in idle:
        heartbeat_ok(sock)
    # Not pending: it takes no pending place (nobody is evicted), but a counted one.
    mine = Phoenix(few_pending.url, apikey=member.token)
    sockets.append(mine)
    heartbeat_ok(mine)
    assert gauges(few_pending.url) == {"realtime_sockets": 1, "realtime_pending_sockets": 4}
    for sock in idle:
        heartbeat_ok(sock)
    ref = joined_ok(mine, f"group:{group.id}", member.token)
    with httpx.Client(base_url=few_pending.url, timeout=30) as http:
        decided = approve(http, group)
    assert mine.receive()[:4] == [ref, None, f"realtime:group:{group.id}", "broadcast"]
    assert decided["status"] == "approved"
    # REALTIME_MAX_SOCKETS (1) reached: the next counted socket is refused at the upgrade.
    status, headers, body = upgrade_refused(few_pending.url, group.creator.token)
    assert (status, headers["retry-after"], body) == (503, "1", {
        "code": "PT503", "message": "Too many sockets on this server; try again later.",
        "details": None, "hint": None})
