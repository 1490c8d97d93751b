"""A real ``otward gateway`` process under a connection flood (issue 13 item 4), on loopback only.

Silent and half-ClientHello connections from many loopback addresses, more than the gateway's
total; idle admitted clients; a client that asks and never reads. An engineer on 127.0.0.1 still
reads registers of a real pymodbus server through it, every flood connection is closed by the
gateway, and its memory (VmRSS) stays within a generous bound. A second gateway started with few
file descriptors lowers its cap instead of running out of them.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.client import ModbusTlsClient
from pymodbus.framer import FramerType

from tests.conftest import free_port
from tests.integration.gateway.conftest import POLICY, GatewayPki, ModbusUpstream

pytestmark = pytest.mark.integration

RSS_BOUND = 64 * 1024 * 1024
WAIT = 30.0


@contextlib.contextmanager
def gateway_process(
    gateway_pki: GatewayPki, upstream: int, *options: str, files: int | None = None
) -> Iterator[tuple[int, subprocess.Popen[str], list[str]]]:
    """(port, process, its log lines: filled in once it stopped) of ``otward gateway`` in Modbus mode."""
    policy = gateway_pki.directory / "limits-policy.toml"
    policy.write_text(POLICY)
    port = free_port()
    command = [
        sys.executable, "-m", "otward", "gateway", "--listen", f"127.0.0.1:{port}",
        "--upstream", f"127.0.0.1:{upstream}", "--trust", str(gateway_pki.trust),
        "--cert", str(gateway_pki.server.certificate), "--key", str(gateway_pki.server.key),
        "--modbus-policy", str(policy), *options,
    ]  # fmt: skip

    def limit_files() -> None:
        if files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    log_path = gateway_pki.directory / f"gateway-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stderr=log, text=True, preexec_fn=limit_files)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + WAIT
        while "otward gateway" not in log_path.read_text():  # printed once it listens
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)
        yield port, process, lines
    finally:
        process.terminate()
        process.wait(timeout=WAIT)
        lines += log_path.read_text().splitlines(keepends=True)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _engineer_reads(gateway_pki: GatewayPki, port: int) -> None:
    engineer = gateway_pki.client("eng-limits", role="engineer")
    client = ModbusTlsClient(
        "127.0.0.1",
        port=port,
        sslctx=engineer.client_context(gateway_pki.trust),
        framer=FramerType.TLS,
        retries=0,
        timeout=WAIT,
    )
    try:
        assert client.connect()
        result = client.read_holding_registers(5, count=2, device_id=1)
        assert not result.isError()
        assert list(result.registers) == [5, 6]
    finally:
        client.close()


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def _connect(port: int, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.bind((source, 0))
    with contextlib.suppress(ConnectionResetError):  # refused at accept before connect returned
        sock.connect(("127.0.0.1", port))
    return sock


def test_a_flood_leaves_the_gateway_to_an_engineer(gateway_pki: GatewayPki, modbus_upstream: ModbusUpstream):
    options = ("--max-connections", "100", "--handshake-timeout", "2", "--idle-timeout", "2")
    with gateway_process(gateway_pki, modbus_upstream.port, *options) as (port, process, lines):
        _engineer_reads(gateway_pki, port)
        before = _rss(process.pid)
        flood: list[socket.socket] = []
        try:
            flood += [_connect(port, "127.0.0.9") for _ in range(9)]  # one beyond its 8
            for n in range(240):  # 30 addresses x 8: past the total of 100
                flood.append(_connect(port, f"127.0.1.{n // 8 + 1}"))
            for n in range(80):  # half a ClientHello each
                sock = _connect(port, f"127.0.2.{n // 8 + 1}")
                flood.append(sock)
                with contextlib.suppress(OSError):
                    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            _engineer_reads(gateway_pki, port)  # while the flood is held
            after = _rss(process.pid)
            assert all(_closed_by_server(sock) for sock in flood)
        finally:
            for sock in flood:
                sock.close()
        _engineer_reads(gateway_pki, port)
    assert after - before < RSS_BOUND, (before, after)
    log = "".join(lines)
    assert "closed in its TLS handshake to make room at the limit" in log
    assert "per-source limit 8 reached" in log


def test_with_few_file_descriptors_the_gateway_lowers_its_cap(
    gateway_pki: GatewayPki, modbus_upstream: ModbusUpstream
):
    """200 descriptors, 128 kept for files: room for 36 connections of two sockets each."""
    with gateway_process(gateway_pki, modbus_upstream.port, "--handshake-timeout", "2", files=200) as (
        port,
        _process,
        lines,
    ):
        flood: list[socket.socket] = []
        try:
            for n in range(240):  # more than the descriptors left after the gateway's own
                flood.append(_connect(port, f"127.0.3.{n // 8 + 1}"))
            _engineer_reads(gateway_pki, port)
            assert all(_closed_by_server(sock) for sock in flood)
        finally:
            for sock in flood:
                sock.close()
        _engineer_reads(gateway_pki, port)
    log = "".join(lines)
    assert "the open-file limit leaves room for 36 connections, not --max-connections 1000" in log
    # Before the cap it logged 'accept failed' tens of thousands of times, spinning on EMFILE. Sockets
    # closed to make room are released by the event loop a moment later, so a burst of accepts can
    # still meet EMFILE briefly (seen once in a clean-clone CI run): then it pauses instead of spinning.
    assert log.count("accept failed") <= 10, log
