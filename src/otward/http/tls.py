"""The verified TLS client certificate, handed to the application the standard ASGI way.

uvicorn does not fill the ASGI TLS extension yet, so this HTTP protocol does: when a
connection is made it reads the peer certificate from the TLS object, which OpenSSL
has already verified against the CA file (a certificate that fails verification
ends the handshake), and every request on that connection carries it as
``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM strings). Nothing a
client sends in a header can put a certificate there. Response header names go out in their
conventional case (:mod:`otward.web.header_names`), under the connection limits of
:mod:`otward.web.connections`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from otward.web.connections import GuardedHttpProtocol

__all__ = ["TlsAwareHttpProtocol"]

Scope = dict[str, Any]


class TlsAwareHttpProtocol(GuardedHttpProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        tls: dict[str, Any] = {
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "tls_version": None,
            "cipher_suite": None,
        }
        if ssl_object is not None:
            tls["tls_version"] = ssl_object.version()
            # RFC 5929 tls-unique (TLS 1.2 only; None on 1.3): binds an IDevID enrollment's CSR to
            # this connection (RFC 7030 section 3.5). Not part of the ASGI spec: otward's own key.
            if tls["tls_version"] == "TLSv1.2":
                tls["otward.tls_unique"] = ssl_object.get_channel_binding("tls-unique")
        inner: Callable[..., Awaitable[None]] = self.app

        async def app(scope: Scope, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                scope.setdefault("extensions", {})["tls"] = tls
            await inner(scope, receive, send)

        self.app = app
