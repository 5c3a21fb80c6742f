"""Who is on the other end of a request, as SQL sees it (`request.client_addr`)."""

from __future__ import annotations

from typing import Any


def client_address(scope: dict[str, Any]) -> str:
    """The peer's host from the ASGI scope ('' when the server gives none, e.g. on a
    Unix socket). SQL reads it through private.request_client_addr() to limit
    anonymous calls per client."""
    client = scope.get("client")
    return str(client[0]) if client else ""
