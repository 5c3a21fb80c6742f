"""One webhook attempt: signing (Standard Webhooks), the SSRF rules, and an HTTP
POST to the address that was checked.

The host is resolved once; every address it resolves to must be public (not
loopback, private, link-local -- the cloud metadata address 169.254.169.254
among them --, shared, multicast or reserved) unless private addresses are
allowed; the connection then goes to that checked address, so a second DNS
answer cannot point it elsewhere. Redirects are never followed: a 3xx answer
is a failed attempt like any other non-2xx one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

EXCERPT_BYTES = 1024
USER_AGENT = "Joinery-Webhooks/1"


def sign(keys: list[bytes], msg_id: str, timestamp: int, body: str) -> str:
    """The webhook-signature header: `v1,<base64 HMAC-SHA256>` per key, space-separated."""
    content = f"{msg_id}.{timestamp}.{body}".encode()
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        for key in keys)


class Refused(Exception):
    """The URL points where webhooks must not go."""


def forbidden(address: str) -> bool:
    """True for any address that is not globally routable unicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to: the first that `host` resolves to, after every
    one was checked; Refused when any is forbidden (and private ones are not allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise OSError(f"cannot resolve {host}")
    if not allow_private:
        bad = [a for a in addresses if forbidden(a)]
        if bad:
            raise Refused(f"{host} resolves to a non-public address ({bad[0]})")
    return addresses[0]


class _Pinned(http.client.HTTPConnection):
    """HTTP to a checked address, with the URL's host in the Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedTLS(http.client.HTTPSConnection):
    """HTTPS to a checked address; the certificate is verified for the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def excerpt(data: bytes) -> str:
    """At most EXCERPT_BYTES of UTF-8, cut on a character boundary, without NULs."""
    return data[:EXCERPT_BYTES].decode("utf-8", "ignore").replace("\x00", "")


def post(url: str, headers: dict[str, str], body: str, timeout: float,
         allow_private: bool) -> Outcome:
    """POSTs `body` to `url` once; never raises for network trouble (the outcome says)."""
    start = time.perf_counter()

    def took() -> int:
        return round((time.perf_counter() - start) * 1000)

    parts = urlsplit(url)
    try:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused("not an http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = resolve(parts.hostname, port, allow_private)
        kind = _PinnedTLS if parts.scheme == "https" else _Pinned
        conn = kind(parts.hostname, port, address, timeout)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("POST", path, body=body.encode(), headers={
                **headers, "content-type": "application/json", "user-agent": USER_AGENT,
                "connection": "close"})
            response = conn.getresponse()
            data = response.read(EXCERPT_BYTES)
            return Outcome(response.status, took(), excerpt(data), None)
        finally:
            conn.close()
    except Refused as exc:
        return Outcome(None, took(), None, f"refused: {exc}")
    except TimeoutError:
        return Outcome(None, took(), None, "timeout")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Outcome(None, took(), None, f"{type(exc).__name__}: {exc}"[:500])
