"""Resource limits of a real ``otward serve`` under load (issue 13 item 4), on loopback only.

Floods of silent, slow, oversized and never-reading connections come from other loopback addresses
(127.0.0.2 and up) while a legitimate client on 127.0.0.1 asks for its answers: it must get them
(health, EST cacerts, a CRL on the plain port) during the flood, the flood's connections must be
closed by the server, and the worker's memory (VmRSS) must stay within a generous bound. The limits
are set short in ``[server.limits]`` so the deadlines pass within the test.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from otward.services.bootstrap import initialize
from otward.web.connections import MAX_PIPELINED
from tests.conftest import RunningServer, free_port, start_server, stop_server

pytestmark = pytest.mark.integration

LIMITS = """
[server.limits]
max_connections = 200
max_connections_per_source = 100
handshake_timeout = 2
header_timeout = 2
body_timeout = 2
idle_timeout = 2
write_timeout = 2
"""
RSS_BOUND = 64 * 1024 * 1024  # what a flood may add to the worker's resident memory, generously
WAIT = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir: Path = tmp_path_factory.mktemp("limits") / "served"
    initialize(data_dir, organization="ACME Chemicals", public_url=f"http://127.0.0.1:{free_port()}")
    with (data_dir / "config.toml").open("a") as config:
        config.write(LIMITS)
    running = start_server(data_dir)
    yield running
    stop_server(running)


def _worker_rss(server: RunningServer) -> int:
    """Resident memory of the (single) worker process, in bytes."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(workers) == 1, children  # not multiprocessing's resource tracker
    for line in Path(f"/proc/{workers[0]}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def _connect(url: str, source: str) -> socket.socket:
    return socket.create_connection(_address(url), timeout=WAIT, source_address=(source, 0))


def _tls(server: RunningServer, source: str) -> ssl.SSLSocket:
    return server.ssl_context().wrap_socket(_connect(server.https_url, source), server_hostname="127.0.0.1")


def _closed_by_server(sock: socket.socket) -> bool:
    """Reads until the server closes the connection; False if it is still open after WAIT seconds."""
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except (OSError, ssl.SSLError):  # a reset, or the TLS layer torn down
        return True
    return True


def _legitimate_client_is_served(server: RunningServer) -> None:
    """Health and EST cacerts over HTTPS, a CRL on the plain port: each answered as usual."""
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
        cacerts = client.get("/.well-known/est/cacerts")
        assert cacerts.status_code == 200
        assert cacerts.headers["content-type"] == "application/pkcs7-mime"
    assert httpx.get(f"{server.http_url}/crl/root.crl", timeout=WAIT).status_code == 200


@contextlib.contextmanager
def _held(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_a_flood_of_silent_and_slow_connections_leaves_the_service_to_others(server):
    """Slowloris on both ports, TLS handshakes that never finish, a slow EST body, one source over
    its cap, more than the HTTPS port's total (200) from five addresses: the legitimate client is
    served throughout (the oldest connections without a request make room), the flood is closed by
    the server."""
    _legitimate_client_is_served(server)
    before = _worker_rss(server)
    flood: list[socket.socket] = []
    with _held(flood):
        flood += [_connect(server.https_url, "127.0.0.2") for _ in range(100)]  # no ClientHello at all
        for _ in range(100):  # half a ClientHello
            sock = _connect(server.https_url, "127.0.0.3")
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            flood.append(sock)
        for _ in range(100):  # slowloris on the plain port: a head that never ends
            sock = _connect(server.http_url, "127.0.0.4")
            sock.sendall(b"GET /crl/root.crl HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            flood.append(sock)
        for _ in range(30):  # slowloris over TLS, and an EST body that never ends
            tls = _tls(server, "127.0.0.5")
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            flood.append(tls)
            tls = _tls(server, "127.0.0.5")
            tls.sendall(
                b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/pkcs10\r\nContent-Length: 2000\r\n\r\nMIIB"
            )
            flood.append(tls)
        over = [_connect(server.https_url, "127.0.0.2") for _ in range(20)]  # beyond its 100
        flood += over

        _legitimate_client_is_served(server)  # while all of it is held
        assert all(_closed_by_server(sock) for sock in over)
        assert sum(_closed_by_server(sock) for sock in flood) == len(flood)
        after = _worker_rss(server)
    _legitimate_client_is_served(server)
    assert after - before < RSS_BOUND, (before, after)


def test_oversized_heads_are_refused_and_memory_stays_bounded(server):
    """A hundred clients each offering a megabyte of header field: each is refused at the head limit
    (16 KiB), so the worker never holds what they send."""
    with _tls(server, "127.0.1.9") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000)
        assert sock.recv(65536).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    before = _worker_rss(server)
    ended: list[bool] = []
    clients = [_connect(server.http_url, f"127.0.1.{n // 50 + 1}") for n in range(100)]
    with _held(clients):
        for sock in clients:
            sock.sendall(b"GET /crl/root.crl HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 64 * 1024
        for _ in range(16):
            for sock in clients:
                with contextlib.suppress(OSError):
                    sock.sendall(chunk)
        after = _worker_rss(server)
        # each was answered 431 and closed (the answer may be lost to the reset its unread rest causes)
        ended = [_closed_by_server(sock) for sock in clients]
    assert all(ended)
    assert after - before < RSS_BOUND, (before, after)
    with _tls(server, "127.0.0.1") as sock:  # a body is the application's: 413 before it is read
        sock.sendall(
            b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5\r\n"
            b"Content-Type: application/pkcs10\r\nContent-Length: 67108864\r\n\r\nMIIB"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 413 ")
    _legitimate_client_is_served(server)


def test_idle_keep_alive_connections_are_closed_and_do_not_crowd_others_out(server):
    idle: list[socket.socket] = []
    with _held(idle):
        for n in range(150):  # one answered request each, then silence
            tls = _tls(server, f"127.0.2.{n // 50 + 1}")
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert tls.recv(65536).startswith(b"HTTP/1.1 200 ")
            idle.append(tls)
        _legitimate_client_is_served(server)
        assert sum(_closed_by_server(sock) for sock in idle) == len(idle)


def test_a_client_that_never_reads_its_answers_is_cut_off(server):
    """20 MB of pipelined requests for EST cacerts, nothing read meanwhile: uvicorn alone parsed and
    queued every one of them (600 MB for 400,000); now the server answers the first few, reads no
    more, and closes. Memory stays bounded, other clients are served."""
    before = _worker_rss(server)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    sock.bind(("127.0.0.6", 0))
    sock.connect(_address(server.https_url))
    with server.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        requests = b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: x\r\n\r\n" * 100
        with contextlib.suppress(OSError):
            tls.settimeout(5)
            for _ in range(4000):
                tls.sendall(requests)
        after = _worker_rss(server)
        _legitimate_client_is_served(server)
        tls.settimeout(WAIT)
        answers = b""
        with contextlib.suppress(OSError, ssl.SSLError):
            while chunk := tls.recv(65536):
                answers += chunk
    assert 0 < answers.count(b"HTTP/1.1 200 ") <= MAX_PIPELINED + 1
    assert after - before < RSS_BOUND, (before, after)


def test_serve_refuses_a_per_source_cap_over_the_total(server):
    """Checked before anything changes or listens (here beside the running service, on its data)."""
    result = subprocess.run(
        [sys.executable, "-m", "otward", "serve", "--data", str(server.data_dir), "--port", str(free_port()),
         "--http-port", str(free_port()), "--max-connections", "10", "--max-connections-per-source", "20"],
        capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "max_connections_per_source (20) exceeds max_connections (10)" in result.stdout + result.stderr
    _legitimate_client_is_served(server)
