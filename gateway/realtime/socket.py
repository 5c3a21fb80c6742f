"""/realtime/v1/websocket: the part of Supabase Realtime's protocol (Phoenix
channels) that supabase-js uses for private broadcast channels.

Frames are read and written by phoenix.py (both serializers). A client joins `realtime:{topic}` with
`config.private` and an `access_token`; the join is authorised by
api.can_subscribe under that token's claims, through the same transaction path
as an HTTP call. Messages published by the database reach every channel of the
topic as `broadcast` events `{type: 'broadcast', event, payload}`. A channel
ends with a `system` message and `phx_close` when its token expires or a
refreshed token is refused. Presence, postgres_changes and client broadcasts
are refused with a reply saying so; the socket stays open.

Limits (settings): sockets per process, channels per socket, frame size, idle
time (any frame from the client, a heartbeat included, counts as activity),
and the per-user cap shared with SSE streams. A socket counts against the
per-process cap only while it holds a channel; before its first join (and after
its last leave) it is pending: an `apikey` that is not a valid JWT is refused
at the upgrade (401), pending sockets have their own small cap
(REALTIME_MAX_PENDING_SOCKETS, the oldest evicted for a new one) and must join
within REALTIME_JOIN_TIMEOUT (see access.py)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import db
from ..http.errors import ApiError, invalid_token
from ..jwt_auth import InvalidToken
from . import phoenix
from .access import Access, LimitReached
from .hub import LISTENER_WAIT, Message, Subscription
from .phoenix import Frame

if TYPE_CHECKING:
    from ..http.app import Gateway

PATH = "/realtime/v1/websocket"
PREFIX = "realtime:"
# Close codes (RFC 6455): policy violation, too big, server error, try again later.
POLICY, TOO_BIG, MISSED, TRY_LATER = 1008, 1009, 1011, 1013
SOCKETS_FULL = "too many sockets on this server; try again later"
PENDING_FULL = "too many sockets waiting to join; try again later"
NO_CLIENT_BROADCAST = ("client broadcasts are not supported by this server: only the "
                       "server broadcasts on these channels")


@dataclass
class Channel:
    topic: str  # as the client names it: realtime:{sub_topic}
    sub_topic: str  # the hub's topic: group:{id}, user:{id}
    join_ref: str | None
    token: str
    user: str  # the per-user count this channel holds
    until: float | None  # the token's exp (seconds since the epoch)


class Refused(Exception):
    """A join or refresh is refused; the message is the reason the client reads."""


def token_expiry(claims: dict[str, Any]) -> float | None:
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


class Session:
    """One socket: its channels, its hub subscription, its two loops (frames from
    the client; messages from the hub and channel expiry)."""

    def __init__(self, gw: Gateway, ws: WebSocket, vsn: str, apikey: str) -> None:
        self.gw = gw
        self.ws = ws
        self.vsn = vsn
        # A JWT given as apikey stands in for a join without access_token.
        self.apikey_token = apikey if apikey.count(".") == 2 else None
        self.client = gw.client(ws.scope)  # the client's address, for SQL
        self.access: Access = gw.access
        self.channels: dict[str, Channel] = {}
        self.subscription = Subscription()
        self._send_lock = asyncio.Lock()
        self.empty_since = time.monotonic()  # when the last channel went (or the start)
        # Pending (access.py) until a channel is held; then counted. A socket whose
        # apikey is a valid token of a user (or of service_role) is counted from
        # the start, against that user's cap too (`user`).
        self.counted = False
        self.user: str | None = None
        self.joining = False
        self.ending = False
        self._closing: asyncio.Task[None] | None = None

    # --- frames -----------------------------------------------------------------

    async def push(self, frame: Frame) -> None:
        async with self._send_lock:
            await self.ws.send_text(phoenix.encode(self.vsn, frame))

    async def reply(self, frame: Frame, status: str, response: dict[str, Any]) -> None:
        join_ref, ref, topic, _, _ = frame
        await self.push((join_ref, ref, topic, "phx_reply",
                         {"status": status, "response": response}))

    async def refuse(self, frame: Frame, reason: str) -> None:
        await self.reply(frame, "error", {"reason": reason})

    # --- the two loops ------------------------------------------------------------

    async def run(self) -> None:
        reader = asyncio.create_task(self.read())
        pump = asyncio.create_task(self.pump())
        try:
            await asyncio.wait({reader, pump}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, pump):
                task.cancel()
            for task in (reader, pump):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect,
                                         RuntimeError, OSError):
                    await task
            self.ending = True  # no longer pending nor counted: websocket() gives it back
            for channel in list(self.channels.values()):
                self.drop(channel)

    def enter(self, claims: dict[str, Any] | None) -> ApiError | None:
        """Take this socket's place before the upgrade is accepted: counted, for an
        apikey that is a valid token other than the public anon key; else pending.
        The refusal to answer instead, when there is no place."""
        if claims is not None and claims.get("role") != "anon":
            user = Access.user_key(claims)
            try:
                self.access.take_user(user)
            except LimitReached as exc:
                return ApiError(429, "PT429", str(exc), headers={"Retry-After": "1"})
            if not self.access.promote(self):
                self.access.give_user(user)
                return ApiError(503, "PT503", _sentence(SOCKETS_FULL),
                                headers={"Retry-After": "1"})
            self.user, self.counted = user, True
            return None
        if not self.access.take_pending(self):
            return ApiError(503, "PT503", _sentence(PENDING_FULL), headers={"Retry-After": "1"})
        return None

    def leave(self) -> None:
        """Give back what enter() (or a promotion) took."""
        if self.counted:
            self.access.give_socket()
        else:
            self.access.give_pending(self)
        if self.user is not None:
            self.access.give_user(self.user)
            self.user = None

    def evict(self) -> None:
        """Closed to make room for a newer pending socket (access.py)."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self.close(TRY_LATER, PENDING_FULL))

    def settle(self) -> None:
        """A socket counted for its channels alone whose last channel went is
        pending again."""
        if self.counted and self.user is None and not self.channels and not self.ending:
            self.counted = False
            self.access.demote(self)

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.ws.close(code, reason)

    async def read(self) -> None:
        """Frames from the client. The socket is closed after REALTIME_IDLE_TIMEOUT
        seconds without a frame, and as long without any channel joined (a
        socket that holds nothing is counted against no user, so it may not
        linger; supabase-js itself disconnects when it has no channel left), or
        REALTIME_JOIN_TIMEOUT if that is shorter."""
        settings = self.gw.settings
        limit, idle = settings.realtime_max_frame_bytes, settings.realtime_idle_timeout
        unjoined = idle if self.user is not None else min(idle, settings.realtime_join_timeout)
        last_frame = self.empty_since
        while True:
            silent_at = last_frame + idle
            empty_at = self.empty_since + unjoined if not self.channels else math.inf
            deadline = min(silent_at, empty_at)
            try:
                message = await asyncio.wait_for(self.ws.receive(),
                                                 max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                # Named by the deadline that was due (never by measuring again:
                # a timer may fire a hair early).
                silent = silent_at <= empty_at
                await self.close(1000, "idle timeout" if silent else "no channel joined")
                return
            last_frame = time.monotonic()
            if message["type"] == "websocket.disconnect":
                return
            text, data = message.get("text"), message.get("bytes")
            size = len(data) if data is not None else len((text or "").encode())
            if size > limit:
                await self.close(TOO_BIG, f"frame larger than {limit} bytes")
                return
            if data is not None:
                await self.binary(data)
            elif text is not None:
                frame = phoenix.decode(self.vsn, text)
                if frame is not None:  # not a Phoenix message: nothing to answer to
                    await self.handle(frame)

    async def pump(self) -> None:
        """Hub messages out as broadcasts; channels ended at their token's exp."""
        queue = self.subscription.queue
        while True:
            deadlines = [c.until for c in self.channels.values() if c.until is not None]
            wait = max(0.0, min(deadlines) - time.time()) if deadlines else None
            message: Message | None = None
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(queue.get(), wait)
            if self.subscription.lost:
                await self.close(MISSED, "messages may have been missed: reconnect")
                return
            now = time.time()
            for channel in list(self.channels.values()):
                if channel.until is not None and channel.until <= now:
                    await self.shut(channel, "InvalidJWTToken: Token has expired")
            self.settle()
            if message is not None:
                channel = self.channels.get(PREFIX + message.topic)
                if channel is not None:
                    await self.push((channel.join_ref, None, channel.topic, "broadcast", {
                        "type": "broadcast", "event": message.event, "payload": message.data}))

    # --- messages from the client ---------------------------------------------------

    async def binary(self, data: bytes) -> None:
        """supabase-js sends client broadcasts as binary frames: refuse them by
        their ref. Other binary data is ignored."""
        frame = phoenix.binary_broadcast(data)
        if frame is not None:
            await self.refuse(frame, NO_CLIENT_BROADCAST)

    async def handle(self, frame: Frame) -> None:
        try:
            await self.dispatch(frame)
        finally:
            self.settle()

    async def dispatch(self, frame: Frame) -> None:
        _, _, topic, event, payload = frame
        if topic == "phoenix":
            if event == "heartbeat":
                await self.reply(frame, "ok", {})
            else:
                await self.refuse(frame, f"unknown event {event[:40]!r} on topic phoenix")
            return
        if event == "phx_join":
            await self.join(frame)
            return
        channel = self.channels.get(topic)
        if channel is None:
            await self.refuse(frame, "unmatched topic")
        elif event == "phx_leave":
            self.drop(channel)
            await self.reply(frame, "ok", {})
        elif event == "access_token":
            await self.refresh(channel, payload.get("access_token"))
        elif event == "broadcast":
            await self.refuse(frame, NO_CLIENT_BROADCAST)
        elif event == "presence":
            await self.refuse(frame, "presence is not supported by this server")
        else:
            await self.refuse(frame, f"unknown event {event[:40]!r}")

    async def join(self, frame: Frame) -> None:
        join_ref, _, topic, _, payload = frame
        self.joining = True
        try:
            channel = await self.admit(topic, join_ref, payload)
        except Refused as exc:
            await self.refuse(frame, str(exc))
            return
        finally:
            self.joining = False
        if self._closing is not None:  # evicted meanwhile
            self.access.give_user(channel.user)
            return
        if not self.counted:
            if not self.access.promote(self):
                self.access.give_user(channel.user)
                await self.refuse(frame, f"ConnectionRateLimitReached: {SOCKETS_FULL}")
                await self.close(TRY_LATER, SOCKETS_FULL)
                return
            self.counted = True
        self.channels[topic] = channel
        self.gw.hub.add(channel.sub_topic, self.subscription)
        await self.reply(frame, "ok", {"postgres_changes": []})
        self.subscription.wake()  # the pump recomputes its deadline

    async def admit(self, topic: str, join_ref: str | None, payload: dict[str, Any]) -> Channel:
        """The channel a join asks for, authorised and counted; or Refused."""
        if not topic.startswith(PREFIX):
            raise Refused("unmatched topic")
        sub_topic = topic[len(PREFIX):]
        if not sub_topic:
            raise Refused("TopicNameRequired: You must provide a topic name")
        previous = self.channels.get(topic)
        if previous is not None:  # joined again: the new join replaces the old one
            self.drop(previous)
        limit = self.gw.settings.realtime_channels_per_socket
        if len(self.channels) >= limit:
            raise Refused(f"ChannelRateLimitReached: Too many channels (at most {limit} "
                          "on one socket)")
        config = payload.get("config")
        config = config if isinstance(config, dict) else {}
        if config.get("postgres_changes"):
            raise Refused("postgres_changes is not supported by this server: listen to "
                          "broadcast events on a private channel")
        presence = config.get("presence")
        if isinstance(presence, dict) and presence.get("enabled"):
            raise Refused("presence is not supported by this server")
        if config.get("private") is not True:
            raise Refused("PrivateOnly: this server only serves private channels "
                          "(create the channel with { config: { private: true } })")
        token = payload.get("access_token") or self.apikey_token
        claims = self.verify(token)
        user = Access.user_key(claims)
        try:
            self.access.take_user(user)
        except LimitReached as exc:
            raise Refused(f"ConnectionRateLimitReached: {exc}") from None
        try:
            await self.authorise(claims, sub_topic)
            if not await self.gw.hub.wait_connected(LISTENER_WAIT):
                raise Refused("RealtimeRestarting: the realtime listener is not connected; "
                              "try again")
        except BaseException:
            self.access.give_user(user)
            raise
        previous = self.channels.get(topic)
        if previous is not None:  # a second join of the topic arrived meanwhile
            self.drop(previous)
        return Channel(topic, sub_topic, join_ref, str(token), user, token_expiry(claims))

    def verify(self, token: object) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise Refused("InvalidJWTToken: an access token is required (access_token in "
                          "the join payload, or a JWT as apikey)")
        try:
            claims = self.gw.verifier.verify(token)
        except InvalidToken as exc:
            if str(exc) != "token has expired":
                raise Refused(f"InvalidJWTToken: {exc}") from None
            # Past the verifier's leeway: say by how much, as within it.
            claims = jwt.decode(token, options={"verify_signature": False})
        until = token_expiry(claims)
        if until is not None and until <= time.time():
            raise Refused(f"InvalidJWTToken: Token has expired {int(time.time() - until)} "
                          "seconds ago")
        return claims

    async def authorise(self, claims: dict[str, Any], sub_topic: str) -> None:
        """api.can_subscribe under the token's claims; every refusal (false, or a
        role that may not call it) reads the same, as Supabase words it."""
        who = db.Identity(str(claims["role"]), claims)
        try:
            result = await self.access.can_subscribe(self.gw, who, sub_topic, "GET", PATH,
                                                     self.client)
            allowed = result.status == 200 and result.body == "true"
        except ApiError as exc:
            if exc.status == 503:
                raise Refused("UnableToConnectToProject: the database is unavailable; "
                              "try again") from None
            allowed = False
        if not allowed:
            raise Refused("Unauthorized: You do not have permissions to read from this "
                          f"Channel topic: {sub_topic}")

    async def refresh(self, channel: Channel, token: object) -> None:
        """access_token on a joined channel: the new token must verify and still
        be allowed the topic; otherwise the channel ends (system + phx_close)."""
        if not isinstance(token, str) or not token or token == channel.token:
            return
        try:
            claims = self.verify(token)
            user = Access.user_key(claims)
            if user != channel.user:
                try:
                    self.access.take_user(user)
                except LimitReached as exc:
                    raise Refused(f"ConnectionRateLimitReached: {exc}") from None
                self.access.give_user(channel.user)
                channel.user = user
            await self.authorise(claims, channel.sub_topic)
        except Refused as exc:
            await self.shut(channel, str(exc))
            return
        channel.token = token
        channel.until = token_expiry(claims)
        self.subscription.wake()

    # --- ending channels ----------------------------------------------------------------

    def drop(self, channel: Channel) -> None:
        if self.channels.get(channel.topic) is not channel:
            return
        del self.channels[channel.topic]
        self.gw.hub.discard(channel.sub_topic, self.subscription)
        self.access.give_user(channel.user)
        if not self.channels:
            self.empty_since = time.monotonic()

    async def shut(self, channel: Channel, message: str) -> None:
        """End a channel from the server's side, as Supabase Realtime does: a
        `system` message saying why, then `phx_close`."""
        if self.channels.get(channel.topic) is not channel:
            return
        self.drop(channel)
        await self.push((channel.join_ref, None, channel.topic, "system", {
            "extension": "system", "status": "error", "message": message,
            "channel": channel.sub_topic}))
        await self.push((channel.join_ref, channel.join_ref, channel.topic, "phx_close", {}))


async def websocket(ws: WebSocket) -> None:
    """GET /realtime/v1/websocket?apikey=...&vsn=2.0.0 (upgraded to a WebSocket).

    Refused before the upgrade, as HTTP answers: an apikey that is not a JWT signed
    by a configured key (401, as an HTTP call with it; an expired one is let
    through, pending, to join with a fresh token), and a socket that finds no
    place (Session.enter: 429 or 503)."""
    gw: Gateway = ws.app.state.gateway
    vsn = ws.query_params.get("vsn", "1.0.0")
    apikey = ws.query_params.get("apikey", "")
    claims: dict[str, Any] | None = None
    if apikey:
        try:
            if apikey.count(".") != 2:
                raise InvalidToken("apikey must be a JWT")
            claims = gw.verifier.verify(apikey)
        except InvalidToken as exc:
            if str(exc) != "token has expired":
                await ws.send_denial_response(invalid_token(str(exc)).response())
                return
    session = Session(gw, ws, vsn, apikey)
    if apikey and vsn in phoenix.VERSIONS:
        refusal = session.enter(claims)
        if refusal is not None:
            await ws.send_denial_response(refusal.response())
            return
    await ws.accept()
    try:
        if vsn not in phoenix.VERSIONS:
            await ws.close(POLICY, f"unsupported vsn {vsn[:20]!r}: use 1.0.0 or 2.0.0")
            return
        if not apikey:
            await ws.close(POLICY, "the apikey query parameter is required")
            return
        await session.run()
    finally:
        session.leave()
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await ws.close()


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."
