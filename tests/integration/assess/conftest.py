"""Real TLS servers for the assess tests: Python ``ssl`` listeners on free loopback ports, each
connection handled in its own thread, stopped after the test."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from otward.cli.app import app


@dataclass
class TlsServer:
    port: int
    handshakes: list[bool]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _serve_one(context: ssl.SSLContext, connection: socket.socket, handshakes: list[bool]) -> None:
    with connection:
        connection.settimeout(10)
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                handshakes.append(True)
                tls.sendall(b"ok\n")
                while tls.recv(1024):
                    pass
        except (ssl.SSLError, OSError):
            handshakes.append(False)


@contextlib.contextmanager
def tls_server(context: ssl.SSLContext) -> Iterator[TlsServer]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    server = TlsServer(listener.getsockname()[1], [])
    stop = threading.Event()
    workers: list[threading.Thread] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=_serve_one, args=(context, connection, server.handshakes))
            worker.start()
            workers.append(worker)

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for worker in workers:
            worker.join(timeout=15)


def server_context(
    certificate: Path,
    key: Path,
    *,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
    ciphers: str | None = None,
    client_ca: Path | None = None,
    verify: ssl.VerifyMode = ssl.CERT_REQUIRED,
) -> ssl.SSLContext:
    """A server context with exactly the weakness a test wants (legacy versions at security level 0)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = minimum
        context.maximum_version = maximum
    if ciphers:
        context.set_ciphers(ciphers)
    context.load_cert_chain(str(certificate), str(key))
    if client_ca is not None:
        context.verify_mode = verify
        context.load_verify_locations(cafile=str(client_ca))
    return context


@dataclass
class Result:
    exit_code: int
    document: dict
    output: str

    def checks(self, target: str | None = None) -> dict[str, str]:
        return {
            f["check"]: f["severity"]
            for f in self.document["findings"]
            if target is None or f["target"] == target
        }

    def evidence(self, check: str) -> str:
        return next(f["evidence"] for f in self.document["findings"] if f["check"] == check)


def assess(*args: str) -> Result:
    """``otward assess ... --json`` in-process: exit status and the findings document."""
    result = CliRunner().invoke(app, ["assess", *args, "--json"], catch_exceptions=False)
    try:
        document = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"no findings JSON (exit {result.exit_code}): {result.output}")
    return Result(result.exit_code, document, result.output)
