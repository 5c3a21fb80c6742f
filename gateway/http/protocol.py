"""uvicorn's httptools protocol with the limits a public server needs.

Without them one client can hold a worker's file descriptors and memory: a socket
that sends nothing, half a request line, or headers without the promised body
stays open for ever, and a header of any size is buffered whole. This subclass
adds, per connection:

- a header deadline: the request line and headers must have arrived within
  `header_timeout` seconds of the connection (or of the previous answer, on a
  kept-alive connection); else 408 (nothing at all sent: just closed);
- a body deadline: a body must have arrived within `body_timeout` seconds of its
  headers (while the gateway itself is not pausing the reads); else 408;
- a header size limit: more than `max_header_bytes` of request line and headers,
  or more than `max_headers` headers, get 431 (414 for the request line alone),
  before any authentication; at most that plus two reads is ever buffered;
- a connection cap: at `max_connections` open connections in this process, a new
  connection first evicts the one that has waited longest for a request's
  headers (idle or slow: what an attacker's sockets are), as nginx reuses idle
  keep-alive connections; only when every connection is busy with a request
  does the new one get 503 and is closed at once. Descriptors stay free for the
  pool, the listener and the connections being served.

The deadlines cost the request path two attribute stores and no clock read: one
sweeper task per process looks at every connection each `interval` seconds,
stamps a deadline on the connections that entered a waiting phase since its last
look and closes those past theirs. A deadline therefore fires between `timeout`
and `timeout + interval` seconds after the wait began.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base

# What a connection is waiting for from its client. None: nothing (a request is
# being answered, or an answered kept-alive connection is idle under uvicorn's own
# keep-alive timer as well as ours).
_HEADERS = 1
_BODY = 2


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int
    max_headers: int

    @property
    def interval(self) -> float:
        """How often the sweeper looks: a tenth of the shorter timeout, within
        0.1..1 s (cheap: one pass over this process's connections)."""
        return min(1.0, max(0.1, min(self.header_timeout, self.body_timeout) / 10))


class _TooLarge(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_REASONS = {408: b"Request Timeout", 414: b"URI Too Long",
            431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}
_MESSAGES = {
    408: "The request did not arrive in time.",
    414: "The request line is too long.",
    431: "The request headers are too large.",
    503: "The server has too many connections; retry shortly.",
}


def _answer(status: int) -> bytes:
    """A whole HTTP answer that closes the connection, PostgREST's body shape."""
    body = orjson.dumps({"code": f"PT{status}", "message": _MESSAGES[status],
                         "details": None, "hint": None})
    head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n" % (status, _REASONS[status], len(body)))
    if status == 503:
        head += b"retry-after: 1\r\n"
    return head + b"\r\n" + body


_ANSWERS = {status: _answer(status) for status in _REASONS}


class GuardedProtocol(_Base):
    """See the module's docstring. `limits` is set on a subclass made per process
    by `protocol_class`."""

    limits: ClassVar[Limits]
    # Copies of two limits, read on every request (a class attribute is found
    # faster than an attribute of an attribute).
    _max_header_bytes: ClassVar[int]
    _max_headers: ClassVar[int]
    _sweeper: ClassVar[asyncio.Task[None] | None] = None
    # Whom to evict when the cap is reached, the longest-waiting first: those
    # waiting for headers at the last sweep, then every connection opened since
    # (rebuilt by each sweep; entries no longer waiting are skipped).
    _evictable: ClassVar[deque[GuardedProtocol]]

    _phase: int | None = _HEADERS
    _deadline = 0.0  # 0: not yet stamped by the sweeper
    _began = False  # a new request began during the current read
    _partial = False  # part of a request has arrived, not all of it
    _head_bytes = 0  # bytes read while this request's headers were incomplete
    _read_len = 0  # bytes of the read being parsed
    _first_read = 0  # bytes of the read in which this request began
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        cls = type(self)
        if len(self.server_state.connections) >= self.limits.max_connections \
                and not cls._evict_one():
            # At the cap with every connection busy: answer 503 and close without
            # registering. The client may see a reset instead if it had already
            # sent its request.
            self._refused = True
            transport.write(_ANSWERS[503])
            transport.close()
            return
        super().connection_made(transport)
        cls._evictable.append(self)
        if cls._sweeper is None or cls._sweeper.done():
            cls._sweeper = self.loop.create_task(_sweep(cls, self.server_state.connections))

    @classmethod
    def _evict_one(cls) -> bool:
        """Close the connection that has waited longest for headers, if any still does."""
        while cls._evictable:
            victim = cls._evictable.popleft()
            if victim._phase == _HEADERS and not victim.transport.is_closing():
                victim.expire()
                return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._phase = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, plus the header size checks.
        self._unset_keepalive_if_required()
        waiting = self._phase
        self._began = False
        self._read_len = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _TooLarge):
                self._close_with(exc.__context__.status)
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # A read that began no request and did not complete the headers: all of it
        # is header (headers still buffered whole inside httptools). A read that
        # began a request is not counted, so at most limit + two reads are held.
        if self._phase == _HEADERS and waiting == _HEADERS and not self._began:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_header_bytes:
                self._close_with(431)

    def _close_with(self, status: int) -> None:
        self._phase = None
        if not self.transport.is_closing():
            self.transport.write(_ANSWERS[status])
            self.transport.close()

    def expire(self) -> None:
        """Called by the sweeper when a deadline passed."""
        answering = self._phase == _BODY and self.cycle is not None \
            and self.cycle.response_started
        if (self._phase == _BODY or self._partial) and not answering:
            self._close_with(408)  # part of a request came: say why it ends
        else:
            self._phase = None
            self.transport.close()

    # Parser callbacks

    def on_message_begin(self) -> None:
        _Base.on_message_begin(self)
        self._began = True
        self._partial = True
        self._head_bytes = 0
        self._first_read = self._read_len
        if self._phase != _HEADERS:  # a request pipelined behind one in progress
            self._phase = _HEADERS
            self._deadline = 0.0

    # on_url and on_header stay uvicorn's: the request path pays for no count per
    # header. The size is checked once the headers are complete, exactly but only
    # when the reads that carried them were larger than the limit.

    def on_headers_complete(self) -> None:
        if len(self.headers) > self._max_headers:
            raise _TooLarge(431)
        if self._first_read + self._head_bytes + self._read_len > self._max_header_bytes:
            self._check_exact_size()
        self._phase = _BODY
        self._deadline = 0.0
        _Base.on_headers_complete(self)

    def _check_exact_size(self) -> None:
        if len(self.url) > self._max_header_bytes:
            raise _TooLarge(414)
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self._max_header_bytes:
            raise _TooLarge(431)

    def on_message_complete(self) -> None:
        self._phase = None
        self._partial = False
        _Base.on_message_complete(self)

    def on_response_complete(self) -> None:
        queued = bool(self.pipeline)
        _Base.on_response_complete(self)
        if self._phase is None and not queued:
            self._phase = _HEADERS  # the next request's headers, from now
            self._deadline = 0.0
            self._head_bytes = 0


async def _sweep(cls: type[GuardedProtocol], connections: set[Any]) -> None:
    """Stamp deadlines on connections that began waiting, close those past theirs,
    and list those waiting for headers, the longest-waiting last, for eviction."""
    loop = asyncio.get_running_loop()
    limits = cls.limits
    while True:
        await asyncio.sleep(limits.interval)
        now = loop.time()
        expired = []
        waiting = []
        for conn in connections:
            phase = getattr(conn, "_phase", None)
            if phase is None:
                continue
            if phase == _BODY and conn.flow is not None and conn.flow.read_paused:
                conn._deadline = 0.0  # we are not reading: not the client's delay
            elif conn._deadline == 0.0:
                conn._deadline = now + (limits.header_timeout if phase == _HEADERS
                                        else limits.body_timeout)
            elif now >= conn._deadline:
                expired.append(conn)
                continue
            if phase == _HEADERS:
                waiting.append(conn)
        for conn in expired:
            with contextlib.suppress(Exception):  # one odd connection must not stop the sweep
                conn.expire()
        # The earliest deadline has waited longest: evicted first.
        waiting.sort(key=_deadline)
        cls._evictable = deque(waiting)


_deadline = operator.attrgetter("_deadline")


def protocol_class(limits: Limits) -> type[GuardedProtocol]:
    """A GuardedProtocol subclass holding these limits (and its own sweeper)."""
    return type("GuardedHttpProtocol", (GuardedProtocol,), {
        "limits": limits, "_max_header_bytes": limits.max_header_bytes,
        "_max_headers": limits.max_headers, "_evictable": deque()})
