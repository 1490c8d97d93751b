"""Connection limits of otward's HTTP servers, against a real uvicorn server with a small app.

Each test runs :class:`GuardedServer` on a loopback port in a thread (its own uvloop loop) and talks
raw sockets to it, as a slow, silent or greedy client would. Second clients come from other loopback
addresses (127.0.0.2 and up), so the per-source caps can be seen apart from the total ones.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization

from otward.errors import ConfigError
from otward.web.connections import (
    BODY_STEP,
    MAX_PIPELINED,
    ConnectionLimits,
    GuardedHttpProtocol,
    GuardedServer,
)
from tests.conftest import make_key, self_signed, write_key

FAST = ConnectionLimits(
    max_connections=40,
    max_connections_per_source=10,
    handshake_timeout=0.5,
    header_timeout=0.5,
    body_timeout=0.5,
    idle_timeout=0.5,
    write_timeout=0.5,
    max_header_bytes=4096,
    max_header_fields=20,
)
WAIT = 15.0  # how long a test waits for something that should happen within a second


@dataclass
class App:
    """Answers ``ok``; ``/big`` 256 KiB; ``/upload`` reads the body first. Remembers disconnects."""

    disconnects: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b"ok"
        if scope["path"] == "/big":
            body = b"x" * 256 * 1024
        elif scope["path"] == "/upload":
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.disconnects.append(scope["path"])
                    return
                if not message.get("more_body"):
                    break
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


@dataclass
class Running:
    port: int
    app: App
    server: GuardedServer


@contextlib.contextmanager
def serving(limits: ConnectionLimits = FAST, *, context: ssl.SSLContext | None = None) -> Iterator[Running]:
    app = App()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    config = uvicorn.Config(app, http=GuardedHttpProtocol, lifespan="off", log_level="warning")
    config.load()
    config.ssl = context
    server = GuardedServer(config, limits, name="test")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield Running(listener.getsockname()[1], app, server)
    finally:
        server.should_exit = True
        thread.join(WAIT)
        listener.close()
    assert not thread.is_alive(), "the server did not shut down (a connection it never saw end?)"


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT, source_address=(source, 0))
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def get(port: int, path: str = "/", source: str = "127.0.0.1") -> bytes:
    with connect(port, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return read_to_end(sock)


def test_a_connection_that_sends_nothing_is_closed_without_an_answer():
    with serving() as running, connect(running.port) as sock:
        assert read_to_end(sock) == b""
        assert get(running.port).endswith(b"\r\n\r\nok")


def test_a_request_head_that_does_not_arrive_in_time_gets_408():
    with serving() as running, connect(running.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        assert read_to_end(sock).startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_a_head_trickled_in_is_refused_at_its_deadline():
    with serving() as running, connect(running.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        answer = b""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for _ in range(100):  # a header field every 0.1 s: each byte arrives, the head never does
                sock.sendall(b"X-A: b\r\n")
                time.sleep(0.1)
        answer = read_to_end(sock)
        assert answer.startswith(b"HTTP/1.1 408 "), answer


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", b"larger than 4096 bytes"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", b"larger than 4096 bytes"),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(21)) + b"\r\n",
            b"more than 20 header fields",
        ),
    ],
    ids=["large-field", "long-url", "many-fields"],
)
def test_an_oversized_request_head_gets_431(head, why):
    with serving() as running, connect(running.port) as sock:
        sock.sendall(head)
        answer = read_to_end(sock)
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert why in answer
        assert get(running.port).endswith(b"ok")


def test_a_field_growing_without_end_is_refused_before_it_completes():
    """The parser keeps an incomplete field to itself: the raw bytes of the head are counted too."""
    with serving() as running, connect(running.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX-Big: ")
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for _ in range(64):
                sock.sendall(b"a" * 1024)
        assert read_to_end(sock).startswith(b"HTTP/1.1 431 ")


def test_a_body_that_does_not_arrive_in_time_ends_the_request():
    with serving() as running, connect(running.port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part")
        assert read_to_end(sock) == b""
        deadline = time.monotonic() + WAIT
        while not running.app.disconnects and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running.app.disconnects == ["/upload"]  # the application saw the client gone


def test_a_large_body_arriving_steadily_is_read_however_long_it_takes():
    """Each BODY_STEP bytes within body_timeout: the whole body may take longer (a slow link)."""
    limits = replace(FAST, body_timeout=2.0)
    step = b"x" * BODY_STEP
    with serving(limits) as running, connect(running.port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (6 * BODY_STEP))
        for _ in range(6):  # 3 s in all, a step every 0.5 s
            sock.sendall(step)
            time.sleep(0.5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_body_trickled_in_is_cut_off():
    limits = replace(FAST, body_timeout=2.0)
    with serving(limits) as running, connect(running.port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (4 * BODY_STEP))
        with contextlib.suppress(OSError):
            for _ in range(100):  # 640 bytes a second: a step would take 25 s
                sock.sendall(b"x" * 64)
                time.sleep(0.1)
        assert read_to_end(sock) == b""
        deadline = time.monotonic() + WAIT
        while not running.app.disconnects and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running.app.disconnects == ["/upload"]


def test_an_idle_keep_alive_connection_is_closed_after_its_answer():
    with serving() as running, connect(running.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_to_end(sock).endswith(b"\r\n\r\nok")  # answered, then closed while idle


def _answers(sock: socket.socket, count: int) -> int:
    """How many of ``count`` answers arrive before the server closes the connection."""
    answers = b""
    with contextlib.suppress(ConnectionResetError):
        while answers.count(b"HTTP/1.1 200 ") < count and (chunk := sock.recv(65536)):
            answers += chunk
    return answers.count(b"HTTP/1.1 200 ")


def test_pipelined_requests_in_one_write_are_all_answered():
    """A few small requests in one chunk are not mistaken for one large head."""
    with serving() as running, connect(running.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * (MAX_PIPELINED + 1))
        assert _answers(sock, MAX_PIPELINED + 1) == MAX_PIPELINED + 1
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # still open
        assert _answers(sock, 1) == 1


def test_a_client_queueing_requests_without_end_is_answered_what_it_queued_then_closed():
    """uvicorn alone parsed every request of every chunk and kept reading: 400,000 queued requests
    took 600 MB. Past MAX_PIPELINED queued, nothing more is read; those are answered, then closed."""
    with serving() as running, connect(running.port) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 1000)
        answered = _answers(sock, 1000)
        assert 0 < answered <= MAX_PIPELINED + 1
        assert read_to_end(sock) == b""


def test_a_client_that_never_reads_its_answers_is_disconnected():
    with serving() as running:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(WAIT)
        sock.connect(("127.0.0.1", running.port))
        with sock:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * 50)  # 12.5 MiB of answers asked
            time.sleep(2.0)  # read nothing meanwhile: the server stops writing, then gives up
            received = read_to_end(sock)
        assert received.startswith(b"HTTP/1.1 200 ")
        assert received.count(b"HTTP/1.1 200 ") < 50
        assert get(running.port).endswith(b"ok")


def _hold(running: Running, count: int, source: str) -> list[socket.socket]:
    """``count`` connections from ``source``, once the server has admitted them all."""
    listener = running.server.servers[0]
    before = listener.per_source.get(source, 0)  # type: ignore[attr-defined]
    held = [connect(running.port, source) for _ in range(count)]
    deadline = time.monotonic() + WAIT
    while listener.per_source.get(source, 0) < before + count:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "connections not admitted"
        time.sleep(0.01)
    return held


def _refused(port: int, source: str) -> bool:
    """True if the server closes a new connection from ``source`` without reading a request."""
    with connect(port, source) as sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return read_to_end(sock) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True


def test_one_source_holds_at_most_its_share_and_others_still_get_in():
    limits = ConnectionLimits(max_connections=40, max_connections_per_source=10, header_timeout=30)
    with serving(limits) as running:
        held = _hold(running, 10, "127.0.0.2")
        try:
            assert _refused(running.port, "127.0.0.2")
            assert get(running.port, source="127.0.0.3").endswith(b"ok")
            held.pop().close()
            deadline = time.monotonic() + WAIT
            while _refused(running.port, "127.0.0.2"):  # its slot comes back once the server sees the close
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            for sock in held:
                sock.close()


def test_at_the_total_cap_the_oldest_connection_without_a_request_makes_room():
    """A flood from many addresses fills the total; a newcomer is still served, at the cost of the
    oldest connection that has no request in hand. Trusted proxies have no per-source cap."""
    limits = ConnectionLimits(
        max_connections=14,
        max_connections_per_source=4,
        header_timeout=30,
        body_timeout=30,
        unlimited_sources=("127.0.0.9",),
    )
    with serving(limits) as running:
        held = _hold(running, 4, "127.0.0.2") + _hold(running, 4, "127.0.0.3")
        try:
            held += _hold(running, 6, "127.0.0.9")  # over the per-source cap, and admitted
            assert running.server.servers[0].active == 14  # type: ignore[attr-defined]
            assert get(running.port, source="127.0.0.4").endswith(b"ok")
            assert read_to_end(held[0]) == b""  # the oldest made room
        finally:
            for sock in held:
                sock.close()


def test_connections_with_a_request_in_hand_are_not_cut_to_make_room():
    limits = ConnectionLimits(
        max_connections=6, max_connections_per_source=3, header_timeout=30, body_timeout=30
    )
    with serving(limits) as running:
        held = _hold(running, 3, "127.0.0.2") + _hold(running, 3, "127.0.0.3")
        try:
            for sock in held:  # each in the middle of its body
                sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
            time.sleep(
                0.2
            )  # let the server read the heads (a fixed pause: the outcome does not depend on it)
            assert _refused(running.port, "127.0.0.4")
            held[0].sendall(b"cdefghij")  # the body is complete: answered, kept alive, idle
            assert held[0].recv(65536).startswith(b"HTTP/1.1 200 ")
            assert get(running.port, source="127.0.0.4").endswith(b"ok")  # it made room
            assert read_to_end(held[0]) == b""
        finally:
            for sock in held:
                sock.close()


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    directory: Path = tmp_path_factory.mktemp("tls")
    key = make_key()
    (directory / "cert.pem").write_bytes(
        self_signed(key, "localhost").public_bytes(serialization.Encoding.PEM)
    )
    write_key(directory / "key.pem", key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


@pytest.mark.parametrize(
    "sent", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"], ids=["nothing", "half-hello"]
)
def test_a_tls_handshake_that_does_not_finish_is_dropped(server_tls, sent):
    with serving(context=server_tls) as running, connect(running.port) as sock:
        sock.sendall(sent)
        assert read_to_end(sock) == b""
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        with client.wrap_socket(connect(running.port), server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_to_end(tls).endswith(b"ok")


def test_limits_are_checked_and_shared_among_workers():
    with pytest.raises(ConfigError, match="header_timeout must be positive"):
        ConnectionLimits(header_timeout=0)
    with pytest.raises(ConfigError, match="exceeds max_connections"):
        ConnectionLimits(max_connections=10, max_connections_per_source=11)
    with pytest.raises(ConfigError, match="not an IP address"):
        ConnectionLimits(unlimited_sources=("proxy.example",))
    shared = ConnectionLimits(max_connections=1000, max_connections_per_source=64).for_workers(3)
    assert (shared.max_connections, shared.max_connections_per_source) == (334, 22)
    assert ConnectionLimits(unlimited_sources=("10.0.0.0/8",)).is_unlimited_source("10.1.2.3")
    assert not ConnectionLimits(unlimited_sources=("10.0.0.0/8",)).is_unlimited_source("192.0.2.1")
