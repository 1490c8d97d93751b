"""Request bodies bounded before anything reads them: a pure ASGI middleware.

FastAPI reads and parses a JSON body before dependencies such as authentication run, and
``await request.body()`` buffers whatever arrives, so the bound has to sit in front of the
application. A declared ``Content-Length`` over the route's limit is refused with 413 before a
byte of the body is read; a body without one (chunked) is counted as the application reads it
and refused with 413 the moment it passes the limit. The 413 closes the connection
(``Connection: close``), so the rest of the body is not read either, and the application sees
the client as gone.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from fastapi.responses import Response

from otward.adapters.files import format_size
from otward.web.problems import error_response

__all__ = ["BodyLimit"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
OnRefused = Callable[[Scope, int], Awaitable[None]]

_DIGITS = re.compile(r"[0-9]+")


class BodyLimit:
    """Refuse request bodies over a per-route limit with 413 (problem+json, or EST's line of text),
    before reading them.

    ``limits`` are (path pattern, bytes), the first whose pattern matches the start of the path
    wins; other paths get ``default``. ``on_refused(scope, limit)`` runs after a refusal (EST
    records it in the trail when the request carried a valid token).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: Sequence[tuple[str, int]] = (),
        default: int,
        on_refused: OnRefused | None = None,
    ) -> None:
        self.app = app
        self._limits = [(re.compile(pattern), limit) for pattern, limit in limits]
        self._default = default
        self._on_refused = on_refused

    def limit_for(self, path: str) -> int:
        return next((limit for pattern, limit in self._limits if pattern.match(path)), self._default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is None:
            await _refuse(scope, receive, send, _problem_bad_length(scope))
            return
        if declared > limit:
            await _refuse(scope, receive, send, _problem_too_large(scope, limit))
        elif not await _Bounded(self.app, limit)(scope, receive, send):
            return
        if self._on_refused is not None:
            await self._on_refused(scope, limit)


class _Bounded:
    """One request: counts the body the application reads; past the limit, answers 413 itself,
    tells the application the client is gone and drops whatever it still tries to send."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit
        self._received = 0
        self._started = False
        self._refused = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Run the application; True when the body was refused for its size."""

        async def bounded_receive() -> Message:
            if self._refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                self._received += len(message.get("body", b""))
                if self._received > self._limit:
                    self._refused = True
                    if not self._started:
                        self._started = True
                        await _refuse(scope, receive, send, _problem_too_large(scope, self._limit))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self._refused:
                return
            if message["type"] == "http.response.start":
                self._started = True
            await send(message)

        await self._app(scope, bounded_receive, guarded_send)
        return self._refused


def _content_length(scope: Scope) -> int | None:
    """The declared length (0 without the header); None when the header is not a plain number."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            if not _DIGITS.fullmatch(text):
                return None
            return int(text) if len(text) <= 19 else 1 << 63  # no 4,000-digit int() of a header
    return 0


def _problem_too_large(scope: Scope, limit: int) -> Response:
    return error_response(
        scope,
        413,
        "payload-too-large",
        f"the request body is larger than {format_size(limit)}, the limit of this endpoint",
        rule="body-size",
        extra={"limit": limit},
    )


def _problem_bad_length(scope: Scope) -> Response:
    return error_response(scope, 400, "invalid-request", "Content-Length is not a number", rule="body-size")


async def _refuse(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
    """Answer and close the connection: the body that follows is never read."""
    response.headers["Connection"] = "close"
    await response(scope, receive, send)
