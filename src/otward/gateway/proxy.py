"""The mutual-TLS gateway: accept, handshake, admit, forward; Modbus-aware when given a policy.

Data moves with asyncio Protocols and transports, not streams: a chunk read from
one side is written to the other in the same callback, with back-pressure from
each side's write buffer pausing the other's reads. Connections are accepted on
a plain socket and handed to ``loop.connect_accepted_socket`` with the TLS
context, so that the connection limits (in all and per client address) apply
*before* any handshake work and a failed handshake can be audited with the
peer's address and OpenSSL's reason.
(``loop.start_tls`` after a plain accept lost the ClientHello under uvloop.)

Modbus ordering: allowed requests are forwarded at once (pipelining is kept),
and every request takes a place in a per-connection queue; a denied request's
exception waits in that queue behind the answers of earlier allowed requests,
so a client never sees answers out of order. Upstream answers are matched to
queue places by transaction id, so an upstream that answers out of order is
still put back in request order. At most ``max_in_flight`` requests are
outstanding; beyond that the client is not read. The default is 1 (strictly
one request at a time towards the device) because many Modbus servers, pymodbus
3.16 among them, handle only one frame per TCP segment; raise it for devices
that accept pipelined requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import struct
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from cryptography import x509

from otward.adapters.fdlimit import connections_allowed
from otward.adapters.files import read_limited
from otward.core.audit import EventType, Outcome
from otward.core.modbus import (
    MBAP_HEADER,
    ModbusPolicy,
    Ranges,
    exception_response,
    parse_policy,
    ranges_text,
    request_ranges,
)
from otward.errors import ConfigError, OtwardError
from otward.gateway.audit import AuditWriter
from otward.gateway.identity import IdentityCache, PeerIdentity
from otward.gateway.revocation import RevocationChecker, StalePolicy

__all__ = ["Gateway", "GatewayOptions", "install_uvloop", "load_policy"]

_MAX_POLICY_BYTES = 1 << 20  # a policy file is a few KiB; /dev/zero is refused, not read

log = logging.getLogger("otward.gateway")

_HEADER = struct.Struct(">HHHB")
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
_OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_BACKOFF = 0.5  # seconds accepting pauses when the process is out of file descriptors


@dataclass(frozen=True)
class GatewayOptions:
    """Everything the gateway needs besides the TLS context, already parsed and validated."""

    listen_host: str
    listen_port: int
    upstream_host: str
    upstream_port: int
    policy: ModbusPolicy | None = None
    allow_identities: frozenset[str] = frozenset()
    max_connections: int = 1000
    max_connections_per_source: int = 8  # per client IP address, handshakes included
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    connect_timeout: float = 5.0
    revocation_refresh: float = 30.0
    max_in_flight: int = 1
    max_denied_events: int = 100  # per connection; the rest are counted in one summary event
    backlog: int = 1024


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking listening socket for ``host`` (name, IPv4 or IPv6 literal)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(backlog)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


@dataclass
class _Pending:
    transaction_id: int
    answer: bytes | None = None


@dataclass(eq=False)
class _Connection(asyncio.Protocol):
    """The client side after TLS; forwards to ``upstream`` and checks Modbus requests."""

    gateway: Gateway
    source: str  # address:port, for the audit trail
    host: str = ""  # the client's IP address, which holds one of its per-source slots
    client: asyncio.Transport | None = None
    upstream: asyncio.Transport | None = None
    peer: PeerIdentity | None = None
    seen: bool = True
    last_seen: float = 0.0
    closed: bool = False
    denied: int = 0
    _early: list[bytes] = field(default_factory=list)
    _buffer: bytearray = field(default_factory=bytearray)
    _answers: bytearray = field(default_factory=bytearray)
    _pending: deque[_Pending] = field(default_factory=deque)
    _reading_paused: bool = False

    # -- client side (TLS) ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # called by the TLS layer once the handshake is complete; uvloop's transports do
        # not subclass asyncio.Transport, hence the cast rather than an isinstance check
        self.client = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self._early.append(data)  # arrived with the handshake's last flight
            return
        if self.gateway.options.policy is None:
            self.seen = True
            self.upstream.write(data)
        else:  # Modbus: only a whole request is activity, so trickling bytes cannot hold a slot
            self._buffer += data
            self._requests()

    def eof_received(self) -> bool | None:
        self.close()  # TLS transports cannot stay half-open
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and not self.closed:
            self.upstream.resume_reading()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, client: asyncio.Transport, upstream: asyncio.Transport) -> None:
        self.client = client
        self.upstream = upstream
        client.set_write_buffer_limits(_HIGH_WATER, _LOW_WATER)
        upstream.set_write_buffer_limits(_HIGH_WATER, _LOW_WATER)
        early, self._early = self._early, []
        for chunk in early:
            self.data_received(chunk)

    def close(self, *, abort: bool = False) -> None:
        """Close both sides; the upstream first, so nothing more of this client reaches it."""
        if self.closed:
            return
        self.closed = True
        if self.upstream is not None:
            self.upstream.abort()
        if self.client is not None:
            if abort:
                self.client.abort()
            else:
                self.client.close()
        self.gateway._forget(self)

    # -- Modbus ------------------------------------------------------------------------------------
    def _requests(self) -> None:
        """Handle every complete request frame in the buffer, in order."""
        gateway = self.gateway
        policy = gateway.options.policy
        peer = self.peer
        assert policy is not None  # noqa: S101 - Modbus mode
        assert peer is not None  # noqa: S101
        assert peer.role is not None  # noqa: S101 - admitted only with a role
        buffer = self._buffer
        pending = self._pending
        forward: list[bytes] = []
        offset = 0
        limit = gateway.options.max_in_flight
        try:
            while len(buffer) - offset >= MBAP_HEADER and len(pending) < limit:
                transaction_id, protocol_id, length, unit_id = _HEADER.unpack_from(buffer, offset)
                if protocol_id != 0 or not 2 <= length <= 254:
                    self._malformed(f"MBAP header: protocol id {protocol_id}, length {length}")
                    return
                end = offset + MBAP_HEADER - 1 + length
                if len(buffer) < end:
                    break
                pdu = bytes(buffer[offset + MBAP_HEADER : end])
                ranges = request_ranges(pdu)
                function = pdu[0]
                decision = policy.decide(peer.role, function, ranges)
                if decision.allowed:
                    pending.append(_Pending(transaction_id))
                    forward.append(bytes(buffer[offset:end]))
                else:
                    answer = exception_response(transaction_id, unit_id, function)
                    if pending:
                        pending.append(_Pending(transaction_id, answer))
                    else:
                        self._answers += answer
                    self._deny(function, ranges, decision.reason)
                offset = end
        except OtwardError as exc:
            self._malformed(exc.message)
            return
        finally:
            if offset:
                self.seen = True
                del buffer[:offset]
        if forward and self.upstream is not None:
            gateway.forwarded += len(forward)
            self.upstream.write(b"".join(forward))
        self._flush()
        if len(pending) >= limit and not self._reading_paused and self.client is not None:
            self._reading_paused = True
            self.client.pause_reading()

    def _deny(self, function: int, ranges: Ranges, reason: str) -> None:
        gateway = self.gateway
        gateway.denied += 1
        self.denied += 1
        if self.denied > gateway.options.max_denied_events:
            return  # counted; summarised when the connection ends
        peer = self.peer
        assert peer is not None  # noqa: S101
        gateway.audit.emit(
            EventType.GATEWAY_DENIED,
            peer.name,
            Outcome.FAILURE,
            reason=reason,
            source=self.source,
            details={
                "role": peer.role or "",
                "function": str(function),
                "addresses": ranges_text(ranges),
                "serial": f"{peer.serial_number:x}",
            },
        )

    def _malformed(self, why: str) -> None:
        peer = self.peer
        self.gateway.audit.emit(
            EventType.GATEWAY_DENIED,
            peer.name if peer else "unknown",
            Outcome.FAILURE,
            reason=f"malformed Modbus request, connection closed: {why}",
            source=self.source,
            details={"role": (peer.role or "") if peer else ""},
        )
        self.close(abort=True)

    def _flush(self) -> None:
        pending = self._pending
        answers = self._answers
        while pending:
            answer = pending[0].answer
            if answer is None:
                break
            answers += answer
            pending.popleft()
        if answers and self.client is not None and not self.closed:
            self.client.write(bytes(answers))
            answers.clear()
        if self._reading_paused and len(pending) < self.gateway.options.max_in_flight:
            self._reading_paused = False
            if self.client is not None and not self.closed:
                self.client.resume_reading()
            if self._buffer:
                self._requests()

    def answers_received(self, frame: bytes, transaction_id: int) -> bool:
        """Put an upstream answer in its request's place; False if no request waits for it."""
        for entry in self._pending:
            if entry.answer is None and entry.transaction_id == transaction_id:
                entry.answer = frame
                return True
        return False


class _Upstream(asyncio.Protocol):
    """The plain TCP side towards the device or server."""

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        self.modbus = connection.gateway.options.policy is not None
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        connection.seen = True
        if not self.modbus:
            if connection.client is not None:
                connection.client.write(data)
            return
        buffer = self.buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= MBAP_HEADER:
            transaction_id, protocol_id, length, _ = _HEADER.unpack_from(buffer, offset)
            if protocol_id != 0 or not 2 <= length <= 254:
                log.warning("upstream sent a malformed MBAP header; closing %s", connection.source)
                connection.close(abort=True)
                return
            end = offset + MBAP_HEADER - 1 + length
            if len(buffer) < end:
                break
            if not connection.answers_received(bytes(buffer[offset:end]), transaction_id):
                log.warning("upstream answered transaction %d nobody asked for", transaction_id)
                connection.close(abort=True)
                return
            offset = end
        if offset:
            del buffer[:offset]
            connection._flush()

    def eof_received(self) -> bool | None:
        client = self.connection.client
        if not self.modbus and client is not None and client.can_write_eof():
            client.write_eof()
            return True
        self.connection.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.close()

    def pause_writing(self) -> None:
        if self.connection.client is not None:
            self.connection.client.pause_reading()

    def resume_writing(self) -> None:
        connection = self.connection
        if connection.client is not None and not connection.closed and not connection._reading_paused:
            connection.client.resume_reading()


class Gateway:
    """The server: one instance per listening address."""

    def __init__(
        self,
        options: GatewayOptions,
        context: ssl.SSLContext,
        trusted: list[x509.Certificate],
        revocation: RevocationChecker,
        audit: AuditWriter | None = None,
    ) -> None:
        self.options = options
        self.context = context
        self.trusted = trusted
        self._identities = IdentityCache(trusted)
        self.revocation = revocation
        self.audit = audit or AuditWriter(None)
        self.active = 0  # connections holding a slot, handshake included
        self.per_source: dict[str, int] = {}  # slots held per client IP address
        self.accepted = 0
        self.refused = 0
        self.denied = 0
        self.forwarded = 0
        self.connections: set[_Connection] = set()
        # refusals at accept not yet audited one by one, per (client address, reason); see _refuse
        self._unrecorded: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: socket.socket | None = None
        self._accepting = False
        self._resume: asyncio.TimerHandle | None = None
        # sockets in their TLS handshake, oldest first, with their address and client address:port;
        # at the total cap the oldest makes room (see _accept)
        self._handshaking: dict[socket.socket, tuple[str, str]] = {}
        self._evicted: set[socket.socket] = set()
        self.max_connections = options.max_connections  # lowered at start if file descriptors are short
        self._stopped: asyncio.Event | None = None
        self._http: httpx.AsyncClient | None = None
        self.port = options.listen_port

    # -- start and stop ----------------------------------------------------------------------
    async def start(self) -> None:
        """Load the cached CRLs, fetch fresh ones, then listen."""
        if self.revocation.enabled:
            for problem in self.revocation.load_cache():
                log.warning("%s", problem)
            self._http = httpx.AsyncClient(follow_redirects=False)
            await self._refresh_once()
        else:
            log.warning("no --crl-url: revoked client certificates are NOT refused")
        try:
            self._listener = _listen(self.options.listen_host, self.options.listen_port, self.options.backlog)
        except OSError as exc:
            raise ConfigError(
                f"--listen {self.options.listen_host}:{self.options.listen_port}: cannot listen "
                f"({exc.strerror or exc})"
            ) from None
        self.port = int(self._listener.getsockname()[1])
        self._stopped = asyncio.Event()
        # two descriptors per connection: the client's and the upstream one
        self.max_connections = connections_allowed(self.options.max_connections, files_per_connection=2)
        if self.max_connections < self.options.max_connections:
            log.warning(
                "the open-file limit leaves room for %d connections, not --max-connections %d",
                self.max_connections,
                self.options.max_connections,
            )
        self._watch()
        self._spawn(self._sweep())
        if self.revocation.enabled:
            self._spawn(self._refresh_forever())
        self.audit.emit(
            EventType.SERVICE_STARTED,
            f"gateway:{self.options.listen_host}:{self.port}",
            Outcome.SUCCESS,
            details={
                "upstream": f"{self.options.upstream_host}:{self.options.upstream_port}",
                "mode": "modbus" if self.options.policy is not None else "tunnel",
                "revocation": "crl" if self.revocation.enabled else "off",
            },
        )

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serve_forever(self) -> None:
        """Wait until :meth:`close`."""
        assert self._stopped is not None  # noqa: S101 - start() first
        await self._stopped.wait()

    def _watch(self) -> None:
        self._resume = None
        if self._listener is not None and not self._accepting:
            asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept)
            self._accepting = True

    def _unwatch(self) -> None:
        if self._listener is not None and self._accepting:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._accepting = False

    async def close(self) -> None:
        """Stop listening, close every connection, stop the background tasks."""
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._listener is not None:
            self._unwatch()
            self._listener.close()
            self._listener = None
        for connection in list(self.connections):
            connection.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._record_refusals(final=True)
        if self._stopped is not None:
            self._stopped.set()
        if self._http is not None:
            await self._http.aclose()
        self.audit.emit(
            EventType.SERVICE_STOPPED, f"gateway:{self.options.listen_host}:{self.port}", Outcome.SUCCESS
        )

    def _hold(self, host: str) -> None:
        self.active += 1
        self.per_source[host] = self.per_source.get(host, 0) + 1

    def _release(self, host: str) -> None:
        self.active -= 1
        held = self.per_source.pop(host, 0) - 1
        if held > 0:
            self.per_source[host] = held

    def _forget(self, connection: _Connection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self._release(connection.host)
            if connection.denied > self.options.max_denied_events and connection.peer is not None:
                self.audit.emit(
                    EventType.GATEWAY_DENIED,
                    connection.peer.name,
                    Outcome.FAILURE,
                    reason=(
                        f"{connection.denied - self.options.max_denied_events} further denied "
                        "requests on this connection (not recorded one by one)"
                    ),
                    source=connection.source,
                    details={"role": connection.peer.role or "", "denied": str(connection.denied)},
                )

    # -- one connection -----------------------------------------------------------------------
    def _accept(self) -> None:
        """Accept what the backlog holds; over a limit a socket is closed before any TLS work.

        Two limits: ``max_connections_per_source`` slots per client IP address, so that one
        source cannot hold the others' slots, and ``max_connections`` in all.
        """
        listener = self._listener
        if listener is None:
            return
        options = self.options
        for _ in range(64):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_FILES:
                    continue  # ECONNABORTED and the like concern that one connection only
                # Out of descriptors: the backlog keeps the socket readable, so stop watching it for
                # a moment instead of spinning; connections wait in the backlog meanwhile.
                log.warning("accept failed (%s); pausing %.1f s", exc.strerror, _ACCEPT_BACKOFF)
                self._unwatch()
                if self._resume is None:
                    self._resume = asyncio.get_running_loop().call_later(_ACCEPT_BACKOFF, self._watch)
                return
            host = str(address[0]) if isinstance(address, tuple) else "unknown"
            source = f"{host}:{address[1]}" if isinstance(address, tuple) else "unknown"
            if self.per_source.get(host, 0) >= options.max_connections_per_source:
                self._refuse(
                    sock, host, source, f"per-source limit {options.max_connections_per_source} reached"
                )
                continue
            if self.active >= self.max_connections and not self._evict_handshake():
                self._refuse(sock, host, source, f"connection limit {self.max_connections} reached")
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._hold(host)
            self._handshaking[sock] = (host, source)
            self._spawn(self._admit(sock, host, source))

    def _evict_handshake(self) -> bool:
        """At the total cap, end the oldest connection still in its TLS handshake to make room: a
        flood from many addresses then holds slots only until newer connections arrive, not for
        the whole handshake timeout. Admitted clients are never cut. False if none is handshaking."""
        if not self._handshaking:
            return False
        sock, (host, source) = next(iter(self._handshaking.items()))
        del self._handshaking[sock]
        self._evicted.add(sock)
        self._release(host)
        with contextlib.suppress(OSError):  # its handshake fails, which closes the transport
            sock.shutdown(socket.SHUT_RDWR)
        self._count_refusal(host, source, "closed in its TLS handshake to make room at the limit")
        return True

    def _refuse(self, sock: socket.socket, host: str, source: str, reason: str) -> None:
        """Close a socket at accept; audit the first refusal per address and reason, count the rest."""
        self._count_refusal(host, source, reason)
        sock.close()

    def _count_refusal(self, host: str, source: str, reason: str) -> None:
        """Audit the first refusal per address and reason, count the rest.

        The counted ones are summarised in one event per sweep period (see _record_refusals), so a
        flood from one address costs the trail one record every few seconds, not one per attempt.
        """
        self.refused += 1
        key = (host, reason)
        unrecorded = self._unrecorded.get(key)
        if unrecorded is not None:
            self._unrecorded[key] = unrecorded + 1
            return
        self._unrecorded[key] = 0
        self.audit.emit(
            EventType.GATEWAY_CONNECTION, "unknown", Outcome.FAILURE, reason=reason, source=source
        )
        log.info("refused %s: %s", source, reason)

    def _record_refusals(self, *, final: bool = False) -> None:
        """One summary event per address and reason with refusals counted since the last one."""
        for key, count in list(self._unrecorded.items()):
            host, reason = key
            if count:
                self.audit.emit(
                    EventType.GATEWAY_CONNECTION,
                    "unknown",
                    Outcome.FAILURE,
                    reason=f"{reason}: {count} further connections refused (not recorded one by one)",
                    source=host,
                    details={"refused": str(count)},
                )
                log.warning("refused %d further connections from %s: %s", count, host, reason)
            if count and not final:
                self._unrecorded[key] = 0  # still refusing: keep counting into the next summary
            else:
                del self._unrecorded[key]  # a quiet period: the next refusal is recorded at once

    async def _admit(self, sock: socket.socket, host: str, source: str) -> None:
        """Handshake, check the certificate, connect upstream, then let data flow."""
        loop = asyncio.get_running_loop()
        connection = _Connection(self, source, host, last_seen=loop.time())
        subject = "unknown"
        stage = "handshake"
        tls: asyncio.Transport | None = None
        try:
            tls, _ = await loop.connect_accepted_socket(
                lambda: connection,
                sock,
                ssl=self.context,
                ssl_handshake_timeout=self.options.handshake_timeout,
            )
            self._handshaking.pop(sock, None)
            stage = "certificate"
            ssl_object = tls.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if not der:
                raise PermissionError("no client certificate")
            peer = self._identities.get(der)
            connection.peer = peer
            subject = peer.name
            refusal = self._refusal(peer)
            if refusal is not None:
                raise PermissionError(refusal)
            stage = "upstream"
            async with asyncio.timeout(self.options.connect_timeout):
                upstream, _ = await loop.create_connection(
                    lambda: _Upstream(connection), self.options.upstream_host, self.options.upstream_port
                )
        except Exception as exc:  # noqa: BLE001 - the per-connection edge: audit and fail closed
            self._handshaking.pop(sock, None)
            if sock in self._evicted:  # released, counted and summarised when it was evicted
                self._evicted.discard(sock)
                if tls is not None:
                    tls.abort()
                sock.close()
                return
            self._release(host)
            self.refused += 1
            reason = _refusal_text(stage, exc)
            self.audit.emit(
                EventType.GATEWAY_CONNECTION,
                subject,
                Outcome.FAILURE,
                reason=reason,
                source=source,
                details=_peer_details(connection.peer),
            )
            log.info("refused %s (%s): %s", source, subject, reason)
            connection.closed = True
            if tls is not None:
                tls.close()  # close_notify, so the client sees an orderly end
            else:
                sock.close()
            return
        if connection.closed:  # the client went away while upstream was connecting
            self._release(host)
            upstream.abort()
            return
        self.connections.add(connection)
        self.accepted += 1
        connection.start(tls, upstream)
        self.audit.emit(
            EventType.GATEWAY_CONNECTION,
            subject,
            Outcome.SUCCESS,
            source=source,
            details=_peer_details(connection.peer),
        )

    def _refusal(self, peer: PeerIdentity) -> str | None:
        verdict = self.revocation.check(peer.chain)
        if not verdict.ok:
            return verdict.reason
        policy = self.options.policy
        if policy is not None:
            if peer.role_error is not None:
                return f"role extension refused: {peer.role_error}"
            if peer.role is None:
                return "certificate carries no Modbus role (OID 1.3.6.1.4.1.50316.802.1)"
            if not policy.has_role(peer.role):
                return f"role '{peer.role}' is not in the policy"
        elif self.options.allow_identities and not peer.matches(self.options.allow_identities):
            return f"identity '{peer.name}' is not in --allow-identity"
        return None

    # -- background work ----------------------------------------------------------------------
    async def _sweep(self) -> None:
        """Close connections idle for longer than the idle timeout (checked a few times per period),
        and summarise the refusals at accept counted since the last sweep."""
        loop = asyncio.get_running_loop()
        period = max(0.2, min(5.0, self.options.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            self._record_refusals()
            now = loop.time()
            for connection in list(self.connections):
                if connection.seen:
                    connection.seen = False
                    connection.last_seen = now
                elif now - connection.last_seen >= self.options.idle_timeout:
                    log.info("closing idle connection %s", connection.source)
                    connection.close()

    async def _refresh_once(self) -> None:
        assert self._http is not None  # noqa: S101
        generation = self.revocation.generation
        for problem in await self.revocation.refresh(self._http):
            log.warning("%s", problem)
        if self.revocation.generation != generation or self.revocation.stale is StalePolicy.FAIL_CLOSED:
            self._recheck()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.revocation_refresh)
            try:
                await self._refresh_once()
            except Exception:  # keep refreshing; the last good CRLs stay in force
                log.exception("CRL refresh failed")

    def _recheck(self) -> None:
        """Close every open connection whose certificate chain is no longer good."""
        for connection in list(self.connections):
            peer = connection.peer
            if peer is None:
                continue
            verdict = self.revocation.check(peer.chain)
            if not verdict.ok:
                connection.close(abort=True)
                self.audit.emit(
                    EventType.GATEWAY_CLOSED,
                    peer.name,
                    Outcome.SUCCESS,
                    reason=verdict.reason,
                    source=connection.source,
                    details=_peer_details(peer),
                )
                log.warning("closed %s (%s): %s", connection.source, peer.name, verdict.reason)

    def stale_warning(self, message: str) -> None:
        """Log and audit a stale CRL (the checker calls this once per CRL)."""
        log.warning("%s", message)
        self.audit.emit(EventType.GATEWAY_CONNECTION, "crl", Outcome.FAILURE, reason=message)


def _peer_details(peer: PeerIdentity | None) -> dict[str, str]:
    if peer is None:
        return {}
    details = {"serial": f"{peer.serial_number:x}"}
    if peer.role is not None:
        details["role"] = peer.role
    if peer.uris:
        details["uri"] = peer.uris[0]
    return details


def _refusal_text(stage: str, exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, PermissionError):
        return str(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"{stage} timed out"
    if stage == "upstream":
        return f"upstream unreachable: {type(exc).__name__}"
    return f"{stage} failed: {type(exc).__name__}: {exc}"


def install_uvloop() -> bool:
    """Use uvloop's event loop policy when it is installed; True if it is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def load_policy(path: Path) -> ModbusPolicy:
    """Read and validate a policy TOML file; ConfigError names the file and the wrong key."""
    text = read_limited(path, _MAX_POLICY_BYTES, "--modbus-policy")
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--modbus-policy {path}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and inline tables
        raise ConfigError(f"--modbus-policy {path}: nested too deeply") from None
    try:
        return parse_policy(document)
    except ConfigError as exc:
        raise ConfigError(f"--modbus-policy {path}: {exc.message}") from None
