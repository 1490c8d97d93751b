"""Connection limits of otward's HTTP servers: what a client may hold, and for how long.

uvicorn bounds little by itself: it accepts every connection, waits for a TLS handshake up to a
minute, keeps a connection that never sends a byte forever, lets a request head trickle in a byte at
a time (slowloris) and its header fields grow without bound (the httptools parser has no limit;
uvicorn's ``h11_max_incomplete_event_size`` applies to h11 only), and lets a client that never reads
its responses hold its request task. Each of these costs a file descriptor and memory per
connection, so a few hundred sockets from one address could take the service from everybody.

Here every server of ``otward serve`` (HTTPS and the plain status port) and ``otward edge serve``
accepts through a :class:`GuardedListener` and speaks :class:`GuardedHttpProtocol`:

* at accept, before any TLS work: at most ``max_connections_per_source`` per client address
  (trusted proxies exempt) and ``max_connections`` in all. A connection over its address's cap is
  reset at once; at the total, the oldest connection without a request in hand (in its handshake,
  waiting for a head, idle) is closed to make room, so a flood from many addresses cannot keep a
  newcomer out for the length of its deadlines; only if every connection has a request in hand is
  the newcomer reset;
* the TLS handshake completes within ``handshake_timeout``;
* a request head (request line and header fields) arrives within ``header_timeout`` of the
  connection or of its first byte, in at most ``max_header_bytes`` and ``max_header_fields``
  (431 otherwise), and each ``BODY_STEP`` bytes of its body within ``body_timeout`` (a large upload
  over a slow link goes through; a body trickled in to hold the connection does not);
* a keep-alive connection idle for ``idle_timeout`` is closed, and so is one whose responses the
  client has not read for ``write_timeout`` (uvicorn pauses a response while the transport's write
  buffer is full, but the connection and its request task would otherwise wait forever);
* a connection queues at most ``MAX_PIPELINED`` requests behind the one being answered: uvicorn
  parses every request of each chunk it reads and resumes reading after every answer, so a client
  that sends requests without reading answers grew the queue without bound (600 MB measured).

Refusals and timeouts are logged in a summary every few seconds, not one line per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import ipaddress
import logging
import socket
import ssl
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import uvicorn
from uvicorn.config import Config

from otward.adapters.fdlimit import connections_allowed
from otward.errors import ConfigError
from otward.web.header_names import ConventionalHeaderNamesProtocol

__all__ = [
    "BODY_STEP",
    "MAX_PIPELINED",
    "ConnectionLimits",
    "GuardedHttpProtocol",
    "GuardedListener",
    "GuardedServer",
]

log = logging.getLogger("otward.connections")

SUMMARY_SECONDS = 10.0  # refusals and timeouts are logged at most this often
MAX_PIPELINED = 32  # requests one connection may queue behind the one being answered
BODY_STEP = 16 * 1024  # each this many bytes of a request body must arrive within body_timeout
_ACCEPT_BATCH = 64  # connections accepted per wake-up, so a flood cannot starve the loop
_BACKOFF_SECONDS = 0.5  # accepting pauses this long when the process is out of file descriptors
_OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


@dataclass(frozen=True)
class ConnectionLimits:
    """Limits of one listener (``[server.limits]`` in config.toml; ``otward edge serve`` options).

    The connection caps are per process; :meth:`for_workers` divides them among worker processes.
    """

    max_connections: int = 1000
    max_connections_per_source: int = 64
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 15.0
    write_timeout: float = 30.0
    max_header_bytes: int = 16 * 1024
    max_header_fields: int = 100
    unlimited_sources: tuple[str, ...] = ()  # trusted proxies: addresses or networks, no per-source cap

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, int | float) and not value > 0:
                raise ConfigError(f"connection limit {item.name} must be positive, not {value}")
        if self.max_connections_per_source > self.max_connections:
            raise ConfigError(
                f"connection limit max_connections_per_source ({self.max_connections_per_source}) "
                f"exceeds max_connections ({self.max_connections})"
            )
        for network in self.unlimited_sources:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"{network!r} is not an IP address or network") from None

    def for_workers(self, workers: int) -> ConnectionLimits:
        """One worker's share of the connection caps (⌈cap / workers⌉): however the kernel spreads a
        source's connections over the workers, together they hold at most about the cap."""
        workers = max(1, workers)
        return replace(
            self,
            max_connections=-(-self.max_connections // workers),
            max_connections_per_source=-(-self.max_connections_per_source // workers),
        )

    def is_unlimited_source(self, host: str) -> bool:
        if not self.unlimited_sources:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(n, strict=False) for n in self.unlimited_sources)


class _Tally:
    """Counts of refusals and timeouts, logged as one summary per period."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self._handle: asyncio.TimerHandle | None = None

    def note(self, what: str) -> None:
        self.counts[what] += 1
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(SUMMARY_SECONDS, self.flush)

    def flush(self) -> None:
        self._handle = None
        if self.counts:
            summary = "; ".join(f"{count} {what}" for what, count in self.counts.most_common())
            log.warning("%s: %s (in the last %.0f s)", self.name, summary, SUMMARY_SECONDS)
            self.counts.clear()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self.flush()


class _Slot:
    """One accepted connection's share of the caps, given back exactly once."""

    __slots__ = ("host", "listener", "protocol", "released", "sock")

    def __init__(self, listener: GuardedListener, host: str, sock: socket.socket) -> None:
        self.listener = listener
        self.host = host
        self.sock = sock
        self.released = False
        self.protocol: GuardedHttpProtocol | None = None

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.listener._release(self)

    def note(self, what: str) -> None:
        self.listener.tally.note(what)

    def is_evictable(self) -> bool:
        """True while the connection has no request in hand: in its TLS handshake, waiting for or
        reading a request head, or idle between requests."""
        protocol = self.protocol
        if protocol is None or protocol.transport is None:
            return True
        return protocol.has_no_request()

    def evict(self) -> None:
        protocol = self.protocol
        if protocol is None or protocol.transport is None:
            # Still in the event loop's hands (the handshake): end the TCP connection under it, and
            # its own error path closes the transport (cancelling the handshake task could leave
            # a transport whose protocol never hears of the end).
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        else:
            protocol.transport.abort()
        self.release()


class _Phase(enum.Enum):
    HEAD = "head"  # a request head is expected or arriving: header_timeout runs
    BODY = "body"  # the head is in, the body arriving: body_timeout runs
    WAITING = "waiting"  # the request is read; the application answers
    IDLE = "idle"  # between requests: uvicorn's keep-alive timer (idle_timeout) runs


class GuardedHttpProtocol(ConventionalHeaderNamesProtocol):
    """uvicorn's httptools protocol (with conventional response header names) under
    :class:`ConnectionLimits`: read deadlines for each request's head and body, bounded request
    heads, an idle timeout and a write deadline. A :class:`GuardedListener` sets ``limits``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = ConnectionLimits()
        self.timeout_keep_alive = self.limits.idle_timeout  # type: ignore[assignment]  # a float works
        self._slot: _Slot | None = None
        self._phase = _Phase.HEAD
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # raw bytes of the head being read (fields still incomplete included)
        self._field_bytes = 0  # URL, names and values of the head's complete fields
        self._fields = 0
        self._body_due = BODY_STEP  # bytes of the body still due within the running body deadline
        self._heads = 0  # request heads begun on this connection
        self._head_begun = False  # a byte of the current head has arrived
        self._refused = False

    def guard(self, limits: ConnectionLimits, slot: _Slot | None) -> None:
        self.limits = limits
        self.timeout_keep_alive = limits.idle_timeout  # type: ignore[assignment]
        self._slot = slot
        if slot is not None:
            slot.protocol = self

    def has_no_request(self) -> bool:
        """True unless a request is being read (its body) or answered."""
        return self._phase in (_Phase.HEAD, _Phase.IDLE) and (
            self.cycle is None or self.cycle.response_complete
        )

    # -- deadlines ------------------------------------------------------------------------------
    def _arm(self, seconds: float, expired: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _start_head(self) -> None:
        self._phase = _Phase.HEAD
        self._heads += 1
        self._head_begun = False
        self._head_bytes = self._field_bytes = self._fields = 0
        self._arm(self.limits.header_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._deadline = None
        if self._phase is not _Phase.HEAD or self.transport.is_closing():
            return
        self._note(f"request heads not complete within {self.limits.header_timeout:g} s")
        if self._head_begun:
            self._refuse(408, "Request Timeout", "request head not received in time")
        else:  # nothing sent at all: there is nobody to tell
            self.transport.close()

    def _body_expired(self) -> None:
        self._deadline = None
        if self._phase is not _Phase.BODY or self.transport.is_closing():
            return
        if self.flow.read_paused:  # the application has not taken what arrived: not the client's fault
            self._arm(self.limits.body_timeout, self._body_expired)
            return
        self._note(f"request bodies slower than {BODY_STEP // 1024} KiB per {self.limits.body_timeout:g} s")
        self.transport.close()  # the application sees the client gone

    def _write_expired(self) -> None:
        self._write_deadline = None
        if not self.transport.is_closing():
            self._note(f"clients that read no response for {self.limits.write_timeout:g} s")
        self.transport.abort()  # what is buffered for it will never be read

    def _note(self, what: str) -> None:
        if self._slot is not None:
            self._slot.note(what)

    def _refuse(self, status: int, phrase: str, message: str) -> None:
        """Answer the request being read with ``status`` and close the connection."""
        self._refused = True
        self._disarm()
        body = message.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, phrase.encode("ascii"), len(body), body)
        )
        self.transport.close()

    # -- uvicorn's protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()  # from the connection on: one that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        try:
            super().connection_lost(exc)
        finally:
            if self._slot is not None:
                self._slot.release()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._phase is _Phase.IDLE:
            self._start_head()
        in_head, heads = self._phase is _Phase.HEAD, self._heads
        if in_head:
            self._head_begun = True
        super().data_received(data)
        if in_head and heads == self._heads and self._phase is _Phase.HEAD and not self._refused:
            # The same head is still incomplete: count the whole chunk, as a field still
            # incomplete is buffered by the parser, unseen by the callbacks. (A chunk that ended
            # one request and began the next is left to the callbacks and the next chunk.)
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
                self._too_large(f"request head larger than {self.limits.max_header_bytes} bytes")

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            self._refused = True
            self._disarm()
            super().send_400_response(msg)

    def _stop_pipelining(self) -> None:
        """Read no more of a client that queued ``MAX_PIPELINED`` requests: answer those, then close.

        uvicorn parses every request of a chunk it reads and resumes reading after each answer, so a
        client sending requests without reading the answers would queue them without bound (a
        parsed request costs about 1.5 KiB; 400,000 of them were 600 MB)."""
        self._refused = True
        self._disarm()
        self._note(f"clients that queued more than {MAX_PIPELINED} requests")
        self.pipeline[0][0].keep_alive = False  # the last one queued closes the connection
        self.flow.pause_reading()

    def _too_large(self, message: str) -> None:
        self._note("request heads refused as too large")
        self._refuse(431, "Request Header Fields Too Large", message)

    # Once a request is refused, the parser runs on over what it was given (that one chunk)
    # without anything being kept or any request started.
    def on_message_begin(self) -> None:
        if self._refused:
            return
        if len(self.pipeline) >= MAX_PIPELINED:
            self._stop_pipelining()
            return
        if self._phase is not _Phase.HEAD:
            self._start_head()
        self._head_begun = True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._counted(len(url), 0):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._counted(len(name) + len(value), 1):
            super().on_header(name, value)

    def _counted(self, size: int, count: int) -> bool:
        """False (after refusing the request) once the head passes a limit."""
        if self._refused:
            return False
        self._field_bytes += size
        self._fields += count
        if self._field_bytes > self.limits.max_header_bytes:
            self._too_large(f"request head larger than {self.limits.max_header_bytes} bytes")
        elif self._fields > self.limits.max_header_fields:
            self._too_large(f"more than {self.limits.max_header_fields} header fields")
        return not self._refused

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._phase = _Phase.BODY
        self._body_due = BODY_STEP
        self._arm(self.limits.body_timeout, self._body_expired)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_due -= len(body)
        if self._body_due <= 0 and self._phase is _Phase.BODY:  # another step arrived in time
            self._body_due = BODY_STEP
            self._arm(self.limits.body_timeout, self._body_expired)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        if self._phase is _Phase.BODY:
            self._phase = _Phase.WAITING
            self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._phase is _Phase.WAITING:
            self._phase = _Phase.IDLE  # uvicorn arms its keep-alive timer (idle_timeout)
        super().on_response_complete()
        if self._refused:
            self.flow.pause_reading()  # uvicorn resumed it; nothing more is read from this client

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.limits.write_timeout, self._write_expired)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None


class GuardedListener:
    """Accepts from a listening socket under the connection caps, hands each admitted connection
    (after its TLS handshake, when ``context`` is given) to a :class:`GuardedHttpProtocol`.

    Stands where uvicorn keeps the ``asyncio.Server`` it made (``close``, ``wait_closed``)."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], GuardedHttpProtocol],
        *,
        context: ssl.SSLContext | None,
        limits: ConnectionLimits,
        name: str,
        close_socket: bool = False,
    ) -> None:
        self.sock = sock
        self.limits = limits
        self.tally = _Tally(name)
        self.active = 0
        self.per_source: dict[str, int] = {}
        self._slots: dict[_Slot, None] = {}  # admitted connections, oldest first
        self._protocol_factory = protocol_factory
        self._context = context
        self._close_socket = close_socket
        self._handshakes: set[asyncio.Task[None]] = set()
        self._reading = False
        self._closed = False
        self._resume: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self._watch()

    def _watch(self) -> None:
        self._resume = None
        if not self._closed and not self._reading and self._loop is not None:
            self._loop.add_reader(self.sock.fileno(), self._accept)
            self._reading = True

    def _unwatch(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._reading = False

    def close(self) -> None:
        """Stop accepting; end the handshakes in progress (admitted connections are uvicorn's)."""
        if self._closed:
            return
        self._closed = True
        self._unwatch()
        if self._resume is not None:
            self._resume.cancel()
        for task in self._handshakes:
            task.cancel()
        self.tally.cancel()
        if self._close_socket:
            self.sock.close()

    async def wait_closed(self) -> None:
        if self._handshakes:
            await asyncio.gather(*self._handshakes, return_exceptions=True)

    # -- accepting --------------------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FILES:
                    # The backlog keeps the socket readable: stop watching it for a moment instead
                    # of spinning on EMFILE. Connections wait in the backlog meanwhile.
                    log.warning("accept failed (%s); pausing %.1f s", exc.strerror, _BACKOFF_SECONDS)
                    self._unwatch()
                    if self._loop is not None and self._resume is None:
                        self._resume = self._loop.call_later(_BACKOFF_SECONDS, self._watch)
                    return
                continue  # ECONNABORTED and the like concern that one connection only
            host = str(address[0]) if isinstance(address, tuple) else "unknown"
            refusal = self._refusal(host)
            if refusal is None and self.active >= self.limits.max_connections and not self._evict_one():
                refusal = f"connections refused at the limit of {self.limits.max_connections}"
            if refusal is not None:
                self.tally.note(refusal)
                with contextlib.suppress(OSError):  # reset, not an orderly close: no TIME_WAIT here
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            slot = _Slot(self, host, sock)
            self._hold(slot)
            assert self._loop is not None  # noqa: S101 - started
            task = self._loop.create_task(self._admit(sock, slot))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    def _refusal(self, host: str) -> str | None:
        """Why a new connection from ``host`` is refused (its address is at its cap), or None."""
        limits = self.limits
        if self.per_source.get(
            host, 0
        ) >= limits.max_connections_per_source and not limits.is_unlimited_source(host):
            return f"connections from {host} refused at its limit of {limits.max_connections_per_source}"
        return None

    def _evict_one(self) -> bool:
        """At the total cap: close the oldest connection without a request in hand, so that a
        flood from many addresses holds slots only until newer connections arrive, not until its
        deadlines pass. A request being read or answered is never cut. False if there is none."""
        for slot in self._slots:
            if slot.is_evictable():
                slot.evict()
                self.tally.note("connections without a request closed to make room at the limit")
                return True
        return False

    def _hold(self, slot: _Slot) -> None:
        self.active += 1
        self.per_source[slot.host] = self.per_source.get(slot.host, 0) + 1
        self._slots[slot] = None

    def _release(self, slot: _Slot) -> None:
        self.active -= 1
        self._slots.pop(slot, None)
        held = self.per_source.pop(slot.host, 0) - 1
        if held > 0:
            self.per_source[slot.host] = held

    async def _admit(self, sock: socket.socket, slot: _Slot) -> None:
        assert self._loop is not None  # noqa: S101 - started

        def protocol() -> GuardedHttpProtocol:
            made = self._protocol_factory()
            made.guard(self.limits, slot)
            return made

        try:
            if self._context is None:
                await self._loop.connect_accepted_socket(protocol, sock)
            else:
                await self._loop.connect_accepted_socket(
                    protocol, sock, ssl=self._context, ssl_handshake_timeout=self.limits.handshake_timeout
                )
        except (OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError) as exc:
            slot.release()
            sock.close()
            if isinstance(exc, TimeoutError) or "taking longer" in str(exc):  # uvloop, asyncio: aborted
                self.tally.note(f"TLS handshakes not complete within {self.limits.handshake_timeout:g} s")
            elif not isinstance(exc, asyncio.CancelledError):
                self.tally.note("TLS handshakes failed")


class GuardedServer(uvicorn.Server):
    """uvicorn's server accepting through :class:`GuardedListener` s instead of ``loop.create_server``.

    ``config.http`` must be a :class:`GuardedHttpProtocol` (sub)class."""

    def __init__(self, config: Config, limits: ConnectionLimits, *, name: str = "HTTP") -> None:
        super().__init__(config)
        self.limits = limits
        self.name = name

    async def startup(self, sockets: Sequence[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(3)  # uvicorn's STARTUP_FAILURE
        config = self.config
        protocol_class = config.http_protocol_class
        if not (isinstance(protocol_class, type) and issubclass(protocol_class, GuardedHttpProtocol)):
            raise ConfigError(f"{protocol_class!r} is not a GuardedHttpProtocol")
        loop = asyncio.get_running_loop()

        def create_protocol() -> GuardedHttpProtocol:
            return protocol_class(
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop
            )

        limits = self.limits
        allowed = connections_allowed(limits.max_connections)
        if allowed < limits.max_connections:
            log.warning(
                "%s: the open-file limit leaves room for %d connections, not max_connections %d",
                self.name,
                allowed,
                limits.max_connections,
            )
            limits = replace(
                limits,
                max_connections=allowed,
                max_connections_per_source=min(allowed, limits.max_connections_per_source),
            )
        own = sockets is None
        listeners = [config.bind_socket()] if sockets is None else list(sockets)
        for sock in listeners:
            sock.listen(config.backlog)  # bind_socket does not; asyncio's create_server would
        guarded = [
            GuardedListener(
                sock, create_protocol, context=config.ssl, limits=limits, name=self.name, close_socket=own
            )
            for sock in listeners
        ]
        for listener in guarded:
            listener.start()
        self.servers = guarded  # type: ignore[assignment]  # close() and wait_closed() are all uvicorn uses
        self.started = True
