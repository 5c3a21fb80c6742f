"""Headers every page and page asset carries: a CSP that allows no inline
script and no other origin, no referrer (codes travel in URLs), nosniff, and
no caching of pages (they may carry a code)."""

from __future__ import annotations

from typing import Any

CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))

COMMON = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
PAGE = {**COMMON, "Cache-Control": "no-store"}
ASSET = {**COMMON, "Cache-Control": "public, max-age=300"}


class AssetHeaders:
    """ASGI wrapper adding ASSET headers to what a static-file app answers."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.raw = [(k.lower().encode(), v.encode()) for k, v in ASSET.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.raw]
            await send(message)

        await self.app(scope, receive, send_with_headers)
