"""Realtime over Server-Sent Events: one LISTEN connection per gateway process,
fanned out to every subscriber by topic. The same connection hears schema
changes (channel joinery_schema) and tells the function catalogue. The database decides who may
subscribe (api.can_subscribe) and what is published (private.publish, which
NOTIFYs at commit: one message, or a transaction's messages as one JSON array);
this module only carries messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import orjson
import psycopg

CHANNEL = "joinery_realtime"
SCHEMA_CHANNEL = "joinery_schema"  # `python -m gateway migrate` notifies it
QUEUE_SIZE = 256
LISTENER_WAIT = 3.0  # seconds a new subscriber waits for the listener
log = logging.getLogger("joinery.realtime")


class Message:
    """One published message: its topic, its data (the JSON object the database
    sent), and its SSE frame, encoded once however many streams carry it."""

    __slots__ = ("_sse", "data", "topic")

    def __init__(self, topic: str, data: dict[str, Any]) -> None:
        self.topic = topic
        self.data = data
        self._sse: bytes | None = None

    @property
    def event(self) -> str:
        return str(self.data.get("type", "message"))

    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = b"event: " + self.event.encode() + b"\ndata: " + \
                orjson.dumps(self.data) + b"\n\n"
        return self._sse


class Subscription:
    """One client's queue (an SSE stream, or a socket with all its channels). A
    client that falls QUEUE_SIZE messages behind is marked lost and its stream
    ends, so it reconnects instead of silently missing messages. `None` in the
    queue only wakes the reader."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue(QUEUE_SIZE)
        self.lost = False

    def offer(self, message: Message | None) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.lost = True
            if message is not None:  # wake the reader so that it sees `lost`
                self.queue.get_nowait()
                self.queue.put_nowait(None)

    def wake(self) -> None:
        if self.queue.empty():
            self.offer(None)


class Hub:
    def __init__(self, conninfo: str, on_schema_change: Callable[[], None] = lambda: None) -> None:
        self.conninfo = conninfo
        self.on_schema_change = on_schema_change
        self.topics: dict[str, set[Subscription]] = defaultdict(set)
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="realtime-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=3,
                    application_name="joinery-realtime",
                ) as conn:
                    await conn.execute(f"listen {CHANNEL}")
                    await conn.execute(f"listen {SCHEMA_CHANNEL}")
                    self.connected.set()
                    delay = 0.2
                    async for note in conn.notifies():
                        if note.channel == SCHEMA_CHANNEL:
                            self.on_schema_change()
                        else:
                            self._dispatch(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: keep trying
                log.warning("realtime listener: %s; reconnecting", type(exc).__name__)
            self.connected.clear()
            # Subscribers may have missed messages while the listener was down.
            for subscribers in self.topics.values():
                for subscription in subscribers:
                    subscription.lost = True
                    subscription.wake()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _dispatch(self, payload: str) -> None:
        """A NOTIFY's payload: one message (a JSON object), or the messages of one
        transaction in order (a JSON array of them; private.publish_batch_end)."""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        for item in data if isinstance(data, list) else (data,):
            self._dispatch_one(item)

    def _dispatch_one(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        topic = data.get("topic")
        if not isinstance(topic, str):
            return
        subscribers = self.topics.get(topic)
        if not subscribers:
            return
        message = Message(topic, data)
        for subscription in subscribers:
            subscription.offer(message)

    def add(self, topic: str, subscription: Subscription) -> None:
        self.topics[topic].add(subscription)

    def discard(self, topic: str, subscription: Subscription) -> None:
        subscribers = self.topics.get(topic)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self.topics[topic]

    @contextlib.contextmanager
    def subscribe(self, topics: Iterable[str]) -> Iterator[Subscription]:
        subscription = Subscription()
        names = list(dict.fromkeys(topics))
        for name in names:
            self.add(name, subscription)
        try:
            yield subscription
        finally:
            for name in names:
                self.discard(name, subscription)

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), timeout)
        return self.connected.is_set()

    async def stream(self, topics: list[str], heartbeat: float,
                     until: float | None = None) -> AsyncIterator[bytes]:
        """SSE frames for `topics`: a ready event once listening, messages, and a
        comment line every `heartbeat` seconds. Ends when the client goes away, with
        a `reconnect` event when messages may have been missed, or with an
        `expired` event at `until` (time.time(), the token's exp)."""
        with self.subscribe(topics) as subscription:
            yield b"event: ready\ndata: " + orjson.dumps({"topics": topics}) + b"\n\n"
            while not subscription.lost:
                wait = heartbeat
                if until is not None:
                    left = until - time.time()
                    if left <= 0:
                        yield b"event: expired\ndata: {}\n\n"
                        return
                    wait = min(wait, left)
                try:
                    message = await asyncio.wait_for(subscription.queue.get(), timeout=wait)
                except TimeoutError:
                    if until is None or until - time.time() > 0:
                        yield b": heartbeat\n\n"
                    continue
                if message is not None:
                    yield message.sse()
            yield b"event: reconnect\ndata: {}\n\n"
