"""Headers every HTTPS answer carries: HSTS and ``X-Content-Type-Options: nosniff``.

``Strict-Transport-Security`` tells a browser that reached the admin API (Swagger UI at /docs) over
HTTPS never to try it over plain HTTP again, for a year; ``nosniff`` keeps it from reading a PEM or
a problem document as a script or a page. Added only to answers sent over HTTPS (the ASGI scheme):
on the plain-HTTP CRL/OCSP port HSTS means nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["HSTS_MAX_AGE", "SecurityHeaders"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HSTS_MAX_AGE = 31_536_000  # one year
_HEADERS = (
    (b"strict-transport-security", f"max-age={HSTS_MAX_AGE}".encode()),
    (b"x-content-type-options", b"nosniff"),
)
_NAMES = {name for name, _ in _HEADERS}


class SecurityHeaders:
    """Pure ASGI middleware setting :data:`_HEADERS` on every HTTPS response (replacing any the
    application set itself)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(n, v) for n, v in message.get("headers", ()) if n.lower() not in _NAMES]
                message = {**message, "headers": [*kept, *_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
