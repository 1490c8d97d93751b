"""The gateway's TLS policy seen by ``openssl s_client``: TLS 1.2+, ECDHE + AEAD only, client certificates."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.integration.gateway.conftest import GatewayPki, ModbusUpstream, RunningGateway, start_gateway
from tests.tls_policy import assert_tls_policy

pytestmark = [pytest.mark.integration, pytest.mark.interop]

READ_HOLDING_1 = bytes.fromhex("0001 0000 0006 01 03 0001 0001")


@pytest.fixture
def gateway(gateway_pki: GatewayPki, modbus_upstream: ModbusUpstream) -> Iterator[RunningGateway]:
    running = start_gateway(gateway_pki, modbus_upstream.port)
    yield running
    running.stop()


def s_client(gateway_pki: GatewayPki, port: int, *options: str, certificate: bool = True) -> bytes:
    """Run s_client, send one Modbus read and return what came back (the raw answer bytes, if any)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    engineer = gateway_pki.client(f"eng-ossl-{abs(hash(options)) % 10_000}", role="engineer")
    command = [
        openssl,
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-quiet",
        "-CAfile",
        str(gateway_pki.trust),
    ]
    if certificate:
        command += ["-cert", str(engineer.certificate), "-key", str(engineer.key)]
    process = subprocess.Popen(
        [*command, *options], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(READ_HOLDING_1)
        process.stdin.flush()  # kept open: s_client -quiet ends on the server's close, not on EOF
        answer = b""
        deadline = time.monotonic() + 20
        while len(answer) < 11 and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                answer += chunk
        return answer
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stdin.close()
        process.stdout.close()


def test_tls13_with_a_client_certificate_gets_an_answer(gateway, gateway_pki):
    answer = s_client(gateway_pki, gateway.port, "-tls1_3")
    assert answer == bytes.fromhex("0001 0000 0005 01 03 02 0001")


def test_tls12_ecdhe_aead_gets_an_answer(gateway, gateway_pki):
    answer = s_client(gateway_pki, gateway.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert answer == bytes.fromhex("0001 0000 0005 01 03 02 0001")


@pytest.mark.parametrize(
    "options",
    [
        ("-tls1_1",),
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"),  # CBC, not AEAD
        ("-tls1_2", "-cipher", "AES128-GCM-SHA256"),  # no forward secrecy
    ],
    ids=["tls1.1", "cbc", "static-rsa-kx"],
)
def test_old_protocols_and_suites_are_refused(options, gateway, gateway_pki, modbus_upstream):
    assert s_client(gateway_pki, gateway.port, *options) == b""
    assert modbus_upstream.connections == []


def test_no_client_certificate_no_answer(gateway, gateway_pki, modbus_upstream):
    assert s_client(gateway_pki, gateway.port, certificate=False) == b""
    assert modbus_upstream.connections == []


def test_the_gateway_keeps_the_tls_policy_of_every_listener(gateway, gateway_pki):
    engineer = gateway_pki.client("eng-policy", role="engineer")
    assert_tls_policy(gateway.port, cafile=gateway_pki.trust, cert=engineer.certificate, key=engineer.key)
