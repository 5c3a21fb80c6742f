"""Who is on the other end of a request: the address it came from, read through
the proxies the operator trusts (TRUSTED_PROXIES) and through nobody else.

Every place that needs a client's address (the access log, and the per-request
setting `request.client_addr` that SQL reads through private.request_client_addr()
to limit anonymous calls per client) asks `client_address`, so a header cannot
move the address in one place and not in another.

The rule is the usual one (nginx's `real_ip_recursive on`, PostgREST's and
Rails' "rightmost untrusted"):
- the TCP peer is the client, unless it is a trusted proxy;
- from a trusted proxy, `X-Forwarded-For` is read from the right (each proxy
  appends the address it saw), skipping trusted proxies: the first address that
  is not one is the client. Whatever lies to the left of it was written by the
  client itself and is ignored. When every hop is trusted, the leftmost is the client;
- without `X-Forwarded-For`, a trusted proxy's `X-Real-IP` names the client;
- an entry that is not an address ends the walk: the hop that wrote it is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str) -> tuple[Network, ...]:
    """TRUSTED_PROXIES: comma-separated CIDRs (a bare address is a /32 or /128).
    ValueError names the entry that is not one."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an address or a CIDR") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """An address as proxies write it: bare, `v4:port`, `[v6]` or `[v6]:port`."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is that IPv4 address.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def client_address(scope: dict[str, Any], trusted: tuple[Network, ...] = ()) -> str:
    """The client's address of an ASGI request (http or websocket scope), given
    the trusted proxies (Settings.trusted_proxies); '' when the server gives no
    peer (e.g. on a Unix socket)."""
    peer_pair = scope.get("client")
    if not peer_pair:
        return ""
    peer_text: str = peer_pair[0]
    if not trusted:  # the default: nobody's headers are read
        return peer_text
    peer = _address(peer_text)
    if peer is None or not _trusted(peer, trusted):
        return peer_text
    forwarded: list[bytes] = []
    real_ip: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded.append(value)  # several headers read as one list, in order
        elif name == b"x-real-ip" and real_ip is None:
            real_ip = value
    if forwarded:
        hops = b",".join(forwarded).decode("latin-1").split(",")
        client = peer
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break
            client = address
            if not _trusted(address, trusted):
                break
        return str(client)
    if real_ip is not None:
        address = _address(real_ip.decode("latin-1"))
        if address is not None:
            return str(address)
    return str(peer)
