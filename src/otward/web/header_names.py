"""Response header names in their conventional capitalisation (``Content-Type``, ``WWW-Authenticate``).

HTTP header names are case-insensitive (RFC 9110 section 5.1), but EST clients built into devices
are not all HTTP stacks: Cisco libest's ``estclient`` compares ``Content-Type``, ``Content-Length``
and ``WWW-Authenticate`` byte for byte and fails every operation on ``content-type``. The lowering
happens in the server, not in the application: Starlette stores names in lower case, and uvicorn's
httptools protocol lowers every name again as it writes the head (``name = name.lower()``), so
nothing an application sets survives. This protocol therefore fixes the names where the head is
written: each request's response cycle writes through a transport that rewrites the names of its
response head (the one ``write`` that starts with the status line, after any ``100 Continue``)
and passes everything else, the body above all, through untouched.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConventionalHeaderNamesProtocol", "conventional_head", "conventional_name"]

# Names whose usual spelling is not each word capitalised.
_SPECIAL = {
    b"www-authenticate": b"WWW-Authenticate",
    b"etag": b"ETag",
    b"content-md5": b"Content-MD5",
    b"x-request-id": b"X-Request-ID",
}


@functools.lru_cache(maxsize=256)
def conventional_name(name: bytes) -> bytes:
    """``content-type`` -> ``Content-Type``; ``www-authenticate`` -> ``WWW-Authenticate``."""
    lower = name.lower()
    special = _SPECIAL.get(lower)
    if special is not None:
        return special
    return b"-".join(part[:1].upper() + part[1:] for part in lower.split(b"-"))


def conventional_head(data: bytes) -> bytes:
    """``data`` (a status line, header fields, and maybe more after the blank line) with every
    header name of the head in its conventional form; values and anything after the head unchanged."""
    end = data.find(b"\r\n\r\n")
    head, rest = (data, b"") if end < 0 else (data[:end], data[end:])
    status_line, *fields = head.split(b"\r\n")
    lines = [status_line]
    for field in fields:
        name, colon, value = field.partition(b":")
        lines.append(conventional_name(name) + colon + value if colon else field)
    return b"\r\n".join(lines) + rest


class _HeadRewriter:
    """The transport one response cycle writes to: its response head is rewritten on the way out
    (interim ``1xx`` heads too, which precede it), every other write and call goes to ``transport``."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head_pending = True

    def write(self, data: bytes) -> None:
        if self._head_pending and data.startswith(b"HTTP/1."):
            data = conventional_head(data)
            self._head_pending = data[9:10] == b"1"  # after a 1xx the final head is still to come
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ConventionalHeaderNamesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing response header names in their conventional case."""

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:  # a new request's cycle
            self.cycle.transport = cast(asyncio.Transport, _HeadRewriter(self.transport))
