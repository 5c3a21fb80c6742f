"""The client's address (gateway/http/client.py): forwarded headers are read only
from TRUSTED_PROXIES, right to left, and the first untrusted hop is the client."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.http.client import client_address, parse_networks

PROXIES = parse_networks("127.0.0.1/32, 10.0.0.0/8, ::1")


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {"type": "http", "client": (peer, 51000) if peer else None,
            "headers": [(k.encode(), v.encode()) for k, v in headers]}


@pytest.mark.parametrize(("peer", "headers", "expected"), [
    # Nobody trusted: the peer, whatever it says.
    ("127.0.0.1", [("x-forwarded-for", "203.0.113.9")], "127.0.0.1"),
])
def test_nothing_trusted_means_the_peer(peer: str, headers: list[tuple[str, str]],
                                        expected: str) -> None:
    assert client_address(scope(peer, *headers), ()) == expected


@pytest.mark.parametrize(("peer", "headers", "expected"), [
    # An untrusted peer's headers are ignored.
    ("198.51.100.7", [("x-forwarded-for", "203.0.113.9")], "198.51.100.7"),
    ("198.51.100.7", [("x-real-ip", "203.0.113.9")], "198.51.100.7"),
    # A trusted proxy: the rightmost untrusted entry; what the client wrote to its
    # left is ignored.
    ("127.0.0.1", [("x-forwarded-for", "203.0.113.9")], "203.0.113.9"),
    ("127.0.0.1", [("x-forwarded-for", "6.6.6.6, 203.0.113.9")], "203.0.113.9"),
    ("127.0.0.1", [("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")], "203.0.113.9"),
    # Two headers read as one list, in order.
    ("127.0.0.1", [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.9")],
     "203.0.113.9"),
    # Every hop trusted: the leftmost.
    ("127.0.0.1", [("x-forwarded-for", "10.0.0.5, 10.0.0.6")], "10.0.0.5"),
    # Not an address: the hop that wrote it is the client.
    ("127.0.0.1", [("x-forwarded-for", "6.6.6.6, junk, 10.0.0.6")], "10.0.0.6"),
    ("127.0.0.1", [("x-forwarded-for", "junk")], "127.0.0.1"),
    # Ports and brackets as some proxies write them; IPv4 in IPv6.
    ("127.0.0.1", [("x-forwarded-for", "203.0.113.9:4711")], "203.0.113.9"),
    ("127.0.0.1", [("x-forwarded-for", "[2001:db8::1]:4711")], "2001:db8::1"),
    ("127.0.0.1", [("x-forwarded-for", "::ffff:203.0.113.9")], "203.0.113.9"),
    ("::1", [("x-forwarded-for", "2001:db8::1")], "2001:db8::1"),
    # X-Real-IP when there is no X-Forwarded-For; X-Forwarded-For wins otherwise.
    ("127.0.0.1", [("x-real-ip", "203.0.113.9")], "203.0.113.9"),
    ("127.0.0.1", [("x-real-ip", "6.6.6.6"), ("x-forwarded-for", "203.0.113.9")],
     "203.0.113.9"),
    ("127.0.0.1", [("x-real-ip", "junk")], "127.0.0.1"),
    # A trusted proxy that forwarded nothing: itself.
    ("10.9.9.9", [], "10.9.9.9"),
])
def test_trusted_proxies(peer: str, headers: list[tuple[str, str]], expected: str) -> None:
    assert client_address(scope(peer, *headers), PROXIES) == expected


def test_no_peer_address() -> None:
    assert client_address(scope(None), PROXIES) == ""


def test_parse_networks() -> None:
    assert [str(n) for n in parse_networks(" 127.0.0.1, 10.0.0.0/8,,fd00::/8 ")] == [
        "127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]
    with pytest.raises(ValueError, match=r"^'10\.0\.0\.0/33' is not an address or a CIDR$"):
        parse_networks("10.0.0.0/33")
