"""A real SMTP server for tests (aiosmtpd): accepts every message and keeps it.
A message to an address in `hold_for` is kept waiting for its answer until
`release` is set (`held` is set once one waits)."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def part(self, subtype: str) -> str:
        """The decoded text of the text/<subtype> part."""
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        assert body.get_content_type() == f"text/{subtype}"
        return str(body.get_content())


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        sink = self.sink
        if {a.lower() for a in envelope.rcpt_tos} & sink.hold_for:
            sink.held.set()
            while not sink.release.is_set():
                await asyncio.sleep(0.02)
        sink._add(Received(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(content)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpSink:
    """SMTP on 127.0.0.1:port; `received` lists what arrived, in order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self.hold_for: set[str] = set()  # lower-case recipients whose answer waits
        self.held = threading.Event()
        self.release = threading.Event()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=port)

    def _add(self, item: Received) -> None:
        with self._lock:
            self._received.append(item)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def to(self, address: str) -> list[Received]:
        """Messages whose envelope recipients include `address` (case-insensitive)."""
        address = address.lower()
        return [r for r in self.received if address in {a.lower() for a in r.rcpt_tos}]

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    @classmethod
    @contextlib.contextmanager
    def on_a_free_port(cls) -> Iterator[SmtpSink]:
        """A started sink on a port found free; when another process (another test
        run on this machine) took that port in between, on the next one."""
        for attempt in range(5):
            sink = cls(_free_port())
            try:
                sink.start()
            except OSError:
                if attempt == 4:
                    raise
                continue
            try:
                yield sink
            finally:
                sink.stop()
            return

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1,
               what: str = "condition") -> Any:
    """Polls `predicate` until it returns something truthy (returned), failing after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
