"""Header names on the wire of a real ``otward serve``, read as raw bytes from a socket.

Cisco libest's ``estclient`` compares ``Content-Type``, ``Content-Length`` and ``WWW-Authenticate``
byte for byte, so names must leave the server in their conventional case: on every HTTPS answer,
after an interim ``100 Continue``, on each answer of a kept-alive connection, and on the plain-HTTP
CRL/OCSP port.
"""

from __future__ import annotations

import base64
import socket
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.conftest import RunningServer, build_csr, make_key

pytestmark = pytest.mark.integration


def _connect(server: RunningServer, url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    if parts.scheme == "https":
        return server.ssl_context().wrap_socket(sock, server_hostname=parts.hostname)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _exchange(server: RunningServer, url: str, request: bytes) -> bytes:
    with _connect(server, url) as sock:
        sock.sendall(request)
        return _read_all(sock)


def _heads(raw: bytes) -> list[list[bytes]]:
    """The header names of every response head in ``raw`` (each body is Content-Length long)."""
    heads = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 "), head
        names, length = [], 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            names.append(name)
            if name.lower() == b"content-length":
                length = int(value)
        heads.append(names)
        raw = raw[length:]
    return heads


def _assert_conventional(raw: bytes) -> None:
    heads = _heads(raw)
    assert heads, raw
    for names in heads:
        for name in names:  # Content-Type, WWW-Authenticate: every word starts upper-case
            assert all(word[:1].isupper() for word in name.split(b"-")), raw


def _csr_body() -> bytes:
    csr = x509.load_pem_x509_csr(build_csr(make_key(), cn="plc-raw"))
    return base64.b64encode(csr.public_bytes(Encoding.DER))


def test_est_answers_carry_the_header_names_libest_compares(server):
    raw = _exchange(
        server,
        server.https_url,
        b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: otward\r\nConnection: close\r\n\r\n",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Type: application/pkcs7-mime\r\n" in head + b"\r\n"
    assert f"\r\nContent-Length: {len(body)}\r\n".encode() in head + b"\r\n"
    assert b"\r\nStrict-Transport-Security: " in head
    _assert_conventional(raw)
    with httpx.Client(verify=server.ssl_context()) as client:  # the body is passed through untouched
        assert body == client.get(f"{server.https_url}/.well-known/est/cacerts").content

    csr = _csr_body()
    raw = _exchange(
        server,
        server.https_url,
        b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: otward\r\nConnection: close\r\n"
        b"Content-Type: application/pkcs10\r\nContent-Length: %d\r\n\r\n%s" % (len(csr), csr),
    )
    assert raw.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b'\r\nWWW-Authenticate: Basic realm="otward-est"' in raw  # Basic first: libest reads one
    assert b"\r\nContent-Type: text/plain; charset=utf-8\r\n" in raw
    _assert_conventional(raw)


def test_the_final_head_after_100_continue_is_conventional_too(server):
    csr = _csr_body()
    with _connect(server, server.https_url) as sock:
        sock.sendall(
            b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: otward\r\nConnection: close\r\n"
            b"Authorization: Bearer otwe_0123456789abcdef_wrong\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/pkcs10\r\nContent-Length: %d\r\n\r\n" % len(csr)
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(4096)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(csr)
        raw = _read_all(sock)
    assert raw.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b"\r\nWWW-Authenticate: Basic" in raw
    _assert_conventional(raw)


def test_every_answer_of_a_kept_alive_connection_is_conventional(server):
    raw = _exchange(
        server,
        server.https_url,
        b"GET /healthz HTTP/1.1\r\nHost: otward\r\n\r\n"
        b"GET /.well-known/est/csrattrs HTTP/1.1\r\nHost: otward\r\nConnection: close\r\n\r\n",
    )
    assert len(_heads(raw)) == 2, raw
    assert b"\r\nContent-Type: application/json\r\n" in raw
    assert b"\r\nContent-Type: application/csrattrs\r\n" in raw
    _assert_conventional(raw)


def test_the_plain_http_port_is_conventional_too(server):
    raw = _exchange(
        server, server.http_url, b"GET /crl/root.crl HTTP/1.1\r\nHost: otward\r\nConnection: close\r\n\r\n"
    )
    head = raw.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Type: application/pkix-crl" in head
    assert b"\r\nContent-Length: " in head
    _assert_conventional(head + b"\r\n\r\n")
