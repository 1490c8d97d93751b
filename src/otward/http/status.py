"""CRL, OCSP and CA-certificate publication (and ``/healthz`` for load balancers): a small raw ASGI
app, served over plain HTTP.

Relying parties fetch these without TLS (the objects are signed), so the app
runs on its own port as well as under the HTTPS API. It is plain ASGI rather
than FastAPI because OCSP is the hottest path of a CA: no routing table, no
validation layer, one database read and at most one signature per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from otward import __version__
from otward.errors import NotFoundError, OtwardError
from otward.http.metrics import OCSP_RESPONSES
from otward.services.ocsp import OcspResult
from otward.services.pki import Pki

__all__ = ["MAX_BODY", "MAX_OCSP_AGE", "STATUS_PREFIXES", "StatusApp", "ocsp_cache_headers"]

STATUS_PREFIXES = ("/ocsp", "/crl/", "/ca/")

log = logging.getLogger("otward.status")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 16 * 1024  # an OCSP request is a few hundred bytes
_CRL_PATH = re.compile(r"^/crl/([a-z0-9][a-z0-9-]{0,62})\.crl$")
_CA_PATH = re.compile(r"^/ca/([a-z0-9][a-z0-9-]{0,62})\.crt$")
_OCSP_TYPE = b"application/ocsp-response"
MAX_OCSP_AGE = 24 * 3600  # the longest a cache may keep an OCSP answer, whatever its nextUpdate


def _http_date(moment: datetime) -> bytes:
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT").encode()


def ocsp_cache_headers(result: OcspResult, now: datetime) -> list[tuple[bytes, bytes]]:
    """RFC 5019 section 6.2 headers for an OCSP answer fetched with GET: caches may keep it until its
    nextUpdate (at most ``MAX_OCSP_AGE``), revalidate after, and compare by ETag. An answer that no
    cache may keep (unsuccessful, or bound to a nonce) says so."""
    if result.this_update is None or result.next_update is None:
        return [(b"cache-control", b"no-store")]
    max_age = max(0, min(int((result.next_update - now).total_seconds()), MAX_OCSP_AGE))
    return [
        (b"cache-control", f"max-age={max_age}, public, no-transform, must-revalidate".encode()),
        (b"expires", _http_date(result.next_update)),
        (b"last-modified", _http_date(result.this_update)),
        (b"etag", b'"' + hashlib.sha256(result.der).hexdigest().encode() + b'"'),
    ]


async def _answer(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class StatusApp:
    """ASGI app answering ``/ocsp``, ``/ocsp/{base64}``, ``/crl/{ca}.crl`` and ``/ca/{ca}.crt``."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path == "/healthz":
                await self._health(method, send)
            elif path == "/ocsp" or path == "/ocsp/":
                await self._ocsp_post(method, receive, send)
            elif path.startswith("/ocsp/"):
                await self._ocsp_get(method, scope, send)
            elif (match := _CRL_PATH.match(path)) is not None:
                await self._crl(method, match.group(1), send)
            elif (match := _CA_PATH.match(path)) is not None:
                await self._ca_certificate(method, match.group(1), send)
            else:
                await _answer(send, 404, b"not found\n", b"text/plain")
        except NotFoundError as exc:
            await _answer(send, 404, exc.message.encode() + b"\n", b"text/plain")
        except OtwardError:
            log.exception("status request for %s failed", path)
            await _answer(send, 503, b"temporarily unavailable\n", b"text/plain")

    async def _ocsp_post(self, method: str, receive: Receive, send: Send) -> None:
        if method != "POST":
            await _answer(
                send, 405, b"use POST with application/ocsp-request\n", b"text/plain", [(b"allow", b"POST")]
            )
            return
        body = await _read_body(receive)
        if body is None:
            await _answer(send, 413, b"request too large\n", b"text/plain")
            return
        result = self.pki.ocsp.respond(body)
        OCSP_RESPONSES.labels(result.status).inc()
        await _answer(send, 200, result.der, _OCSP_TYPE)

    async def _ocsp_get(self, method: str, scope: Scope, send: Send) -> None:
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, b"use GET /ocsp/{base64 request}\n", b"text/plain", [(b"allow", b"GET")])
            return
        # RFC 6960 appendix A.1: the URL-encoded base64 of the DER request follows the path.
        # The prefix is looked for after percent-decoding: the route matched the decoded path, and a
        # client may have encoded the prefix itself ("/%6Fcsp/...").
        raw_path = scope.get("raw_path") or scope["path"].encode()
        encoded = unquote(raw_path.decode("ascii", "replace")).partition("/ocsp/")[2]
        try:
            der = base64.b64decode(
                encoded.replace("-", "+").replace("_", "/") + "=" * (-len(encoded) % 4), validate=True
            )
        except (binascii.Error, ValueError):
            der = b""
        result = self.pki.ocsp.respond(der)
        OCSP_RESPONSES.labels(result.status).inc()
        await _answer(send, 200, result.der, _OCSP_TYPE, ocsp_cache_headers(result, self.pki.clock()))

    async def _health(self, method: str, send: Send) -> None:
        """What the HTTPS port's /healthz says, for a load balancer in front of the plain-HTTP port."""
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n", b"text/plain", [(b"allow", b"GET")])
            return
        body = json.dumps({"status": "ok", "version": __version__}).encode()
        await _answer(send, 200, body, b"application/json")

    async def _crl(self, method: str, ca: str, send: Send) -> None:
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n", b"text/plain", [(b"allow", b"GET")])
            return
        record = await asyncio.to_thread(self.pki.revocation.current_crl, ca)
        extra = [(b"last-modified", _http_date(record.this_update))]
        await _answer(send, 200, record.der, b"application/pkix-crl", extra)

    async def _ca_certificate(self, method: str, ca: str, send: Send) -> None:
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n", b"text/plain", [(b"allow", b"GET")])
            return
        authority = self.pki.authorities.record(ca)
        await _answer(send, 200, authority.certificate_der, b"application/pkix-cert")
