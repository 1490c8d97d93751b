"""Forwarding audit events to a syslog collector over TLS (RFC 5425, octet-counted frames).

The audit table is the queue: the forwarder sends the records after its cursor
and moves the cursor only once the collector's connection accepted them, so
nothing is lost while the collector is away and nothing is sent twice while it
is up. (A record may be sent twice if the connection breaks after the write and
before the cursor is stored; collectors see the sequence number in each message.)
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from datetime import datetime

from otward.core.audit import AuditFilter
from otward.core.ports import AuditStore
from otward.core.syslog import to_syslog
from otward.errors import BackendError

__all__ = ["SyslogTlsForwarder", "client_context", "frame"]

_BATCH = 500


def frame(message: str) -> bytes:
    """RFC 5425 section 4.3: ``MSG-LEN SP SYSLOG-MSG``."""
    data = message.encode("utf-8")
    return str(len(data)).encode() + b" " + data


class SyslogTlsForwarder:
    """Sends the audit trail to ``host:port`` over TLS, verifying the collector against ``context``."""

    def __init__(
        self,
        store: AuditStore,
        *,
        host: str,
        port: int,
        context: ssl.SSLContext,
        clock: Callable[[], datetime],
        name: str = "syslog",
        timeout: float = 10.0,
    ) -> None:
        self._store = store
        self._host = host
        self._port = port
        self._context = context
        self._clock = clock
        self._name = name
        self._timeout = timeout
        self._connection: ssl.SSLSocket | None = None

    def _connect(self) -> ssl.SSLSocket:
        if self._connection is None:
            raw = socket.create_connection((self._host, self._port), timeout=self._timeout)
            try:
                self._connection = self._context.wrap_socket(raw, server_hostname=self._host)
            except (OSError, ssl.SSLError):
                raw.close()
                raise
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def forward(self) -> int:
        """Send everything after the cursor; returns how many records went out."""
        sent = 0
        while True:
            after = self._store.forward_cursor(self._name)
            records, _ = self._store.list_audit(AuditFilter(after_sequence=after), limit=_BATCH, offset=0)
            if not records:
                return sent
            payload = b"".join(frame(to_syslog(r)) for r in records)
            try:
                self._connect().sendall(payload)
            except (OSError, ssl.SSLError) as exc:
                self.close()
                raise BackendError(f"syslog collector {self._host}:{self._port} unreachable: {exc}") from exc
            self._store.set_forward_cursor(self._name, records[-1].sequence, self._clock())
            sent += len(records)


def client_context(ca_file: str, certificate: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """TLS 1.2+ client context that trusts only ``ca_file`` (and presents a client certificate if given)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certificate:
        context.load_cert_chain(certificate, key)
    return context
