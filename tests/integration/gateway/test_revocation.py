"""Revocation at the gateway with a real ``otward serve`` and a real ``otward cert revoke``.

Issue #5 item 2: with a 2 s refresh, a revoked device gets no request through
more than 5 s after the revocation; the open connection is closed and new ones
are refused. The assertions are on behaviour after that window, not on timings.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from pymodbus.client import ModbusTlsClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from otward.adapters.audit_file import FileAuditTrail
from otward.core.audit import EventType
from otward.gateway.revocation import StalePolicy
from tests.conftest import RunningServer, build_csr, free_port, make_key, start_server, stop_server
from tests.integration.gateway.conftest import (
    POLICY,
    Credentials,
    GatewayPki,
    ModbusUpstream,
    start_gateway,
    write_key,
)
from tests.interop.helpers import otward_cli, run

pytestmark = pytest.mark.integration


def otward(*args: str, data: Path) -> str:
    return otward_cli(data, *args).stdout


def issue(data: Path, directory: Path, name: str, role: str) -> Credentials:
    """``otward cert issue --profile modbus-role --role ROLE`` through the CLI."""
    key = make_key()
    csr = directory / f"{name}.csr"
    csr.write_bytes(build_csr(key, cn=name))
    certificate = directory / f"{name}.pem"
    otward(
        "cert", "issue", "--csr", str(csr), "--profile", "modbus-role", "--role", role, "--out",
        str(certificate), data=data,
    )  # fmt: skip
    from cryptography import x509

    serial = x509.load_pem_x509_certificate(certificate.read_bytes()).serial_number
    return Credentials(certificate, write_key(directory / f"{name}.key", key), serial)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "served")
    yield running
    stop_server(running)


@contextlib.contextmanager
def gateway_process(
    served: RunningServer, directory: Path, upstream_port: int, refresh: float = 2.0
) -> Iterator[int]:
    """``otward gateway`` as a real process in front of ``upstream_port``; yields its port."""
    trust = directory / "trust.pem"
    chain = (served.data_dir / "root.pem").read_bytes()
    issuing_pem = otward("ca", "export", "issuing", data=served.data_dir).encode()
    trust.write_bytes(issuing_pem + chain)
    key = make_key()
    csr = directory / "gw.csr"
    csr.write_bytes(build_csr(key, cn="127.0.0.1", ips=("127.0.0.1",)))
    # a new key on every start, so its certificate replaces the previous one (--force)
    otward("cert", "issue", "--csr", str(csr), "--profile", "tls-server", "--out", str(directory / "gw.pem"),
           "--force", data=served.data_dir)  # fmt: skip
    key_path = directory / "gw.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    policy = directory / "policy.toml"
    policy.write_text(POLICY)
    port = free_port()
    log = (directory / "gateway.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otward",
            "gateway",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"127.0.0.1:{upstream_port}",
            "--trust",
            str(trust),
            "--cert",
            str(directory / "gw.pem"),
            "--key",
            str(key_path),
            "--modbus-policy",
            str(policy),
            "--crl-url",
            f"{served.http_url}/crl/issuing.crl",
            "--revocation-refresh",
            str(refresh),
            "--crl-cache",
            str(directory / "crl-cache"),
            "--audit-file",
            str(directory / "audit.jsonl"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (directory / "gateway.log").read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def client(credentials: Credentials, port: int) -> ModbusTlsClient:
    return ModbusTlsClient(
        "127.0.0.1",
        port=port,
        sslctx=credentials.client_context(None),
        framer=FramerType.TLS,
        retries=0,
        timeout=2,
    )


def gets_through(modbus: ModbusTlsClient) -> bool:
    """True when a read is answered by the upstream."""
    try:
        if not modbus.connected and not modbus.connect():
            return False
        result = modbus.read_holding_registers(1, count=1, device_id=1)
    except (ModbusException, OSError):
        return False
    return not result.isError() and result.registers == [1]


def test_a_revoked_device_is_cut_off_within_the_refresh_window(served, modbus_upstream, tmp_path):
    directory = tmp_path / "gw"
    directory.mkdir()
    device = issue(served.data_dir, directory, "plc-eng-1", "engineer")
    bystander = issue(served.data_dir, directory, "plc-eng-2", "engineer")
    with gateway_process(served, directory, modbus_upstream.port) as port:
        held = client(device, port)
        other = client(bystander, port)
        try:
            assert gets_through(held)
            assert gets_through(other)
            otward("cert", "revoke", f"{device.serial:x}", "--reason", "keyCompromise", data=served.data_dir)
            time.sleep(5)  # the window of issue #5; no request may pass after it
            assert not gets_through(held)  # the open connection was closed...
            fresh = client(device, port)
            try:
                assert not gets_through(fresh)  # ...and a new one is refused
                before = modbus_upstream.holding(2)
                with contextlib.suppress(ModbusException, OSError):
                    fresh.write_register(2, 999, device_id=1)
                assert modbus_upstream.holding(2) == before
            finally:
                fresh.close()
            assert gets_through(other)  # others are untouched
        finally:
            held.close()
            other.close()
    with FileAuditTrail(directory / "audit.jsonl") as trail:
        assert trail.check().ok
        events = [r.event for r in trail.records()]
    closed = [e for e in events if e.type is EventType.GATEWAY_CLOSED]
    assert [e.subject for e in closed] == ["plc-eng-1"]
    assert "revoked" in (closed[0].reason or "")
    # the trail file checks from the command line, and an edited one does not
    verified = otward_cli(
        served.data_dir, "audit", "verify", "--file", str(directory / "audit.jsonl"), "--json"
    )
    assert json.loads(verified.stdout)["ok"] is True
    lines = (directory / "audit.jsonl").read_bytes().splitlines(keepends=True)
    edited = directory / "edited.jsonl"
    edited.write_bytes(b"".join([*lines[:-2], lines[-1]]))
    refused = run([sys.executable, "-m", "otward", "audit", "verify", "--file", str(edited)], check=False)
    assert refused.returncode == 1
    assert "trail file broken at record" in refused.stdout
    # a CRL fetch every 2 s is routine: not one INFO line each (it was httpx's "HTTP Request: GET")
    gateway_log = (directory / "gateway.log").read_text().splitlines()
    assert not [line for line in gateway_log if "issuing.crl" in line and " INFO " in line]
    # otward serve runs two uvicorn servers in one process; each lifecycle line is printed once
    serve_log = (served.data_dir / "serve.log").read_text()
    assert serve_log.count("Started server process") == 1, serve_log


def test_the_last_good_crl_survives_a_restart_without_the_ca(served, modbus_upstream, tmp_path):
    directory = tmp_path / "gw"
    directory.mkdir()
    revoked = issue(served.data_dir, directory, "plc-eng-3", "engineer")
    good = issue(served.data_dir, directory, "plc-eng-4", "engineer")
    otward("cert", "revoke", f"{revoked.serial:x}", data=served.data_dir)
    with gateway_process(served, directory, modbus_upstream.port):
        pass  # fetched and cached the CRL
    assert list((directory / "crl-cache").iterdir())
    assert all(p.stat().st_mode & 0o077 == 0 for p in (directory / "crl-cache").iterdir())
    stop_server(served)  # the CA is gone; the gateway starts from its cache
    with gateway_process(served, directory, modbus_upstream.port) as port:
        for credentials, admitted in ((revoked, False), (good, True)):
            modbus = client(credentials, port)
            try:
                assert gets_through(modbus) is admitted
            finally:
                modbus.close()


def test_without_any_crl_every_client_is_refused(gateway_pki: GatewayPki, modbus_upstream: ModbusUpstream):
    unreachable = f"http://127.0.0.1:{free_port()}/crl/issuing.crl"
    running = start_gateway(gateway_pki, modbus_upstream.port, crl_urls=(unreachable,))
    try:
        engineer = gateway_pki.client("eng-no-crl", role="engineer")
        modbus = client(engineer, running.port)
        try:
            assert not gets_through(modbus)
        finally:
            modbus.close()
    finally:
        running.stop()
    assert modbus_upstream.connections == []


def test_a_stale_crl_is_kept_or_fails_closed(
    gateway_pki: GatewayPki, modbus_upstream: ModbusUpstream, tmp_path
):
    """A cached CRL past its nextUpdate: enforced under ``keep``; clients refused under ``fail-closed``."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from otward.gateway.revocation import _cache_name

    issuing = gateway_pki.pki.authorities.get("issuing")
    now = datetime.now(UTC)
    stale = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuing.certificate.subject)
        .last_update(now - timedelta(days=10))
        .next_update(now - timedelta(days=3))
        .add_extension(x509.CRLNumber(1), critical=False)
        .sign(issuing.key, hashes.SHA256())
    )
    unreachable = f"http://127.0.0.1:{free_port()}/crl/issuing.crl"
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / _cache_name(unreachable)).write_bytes(stale.public_bytes(serialization.Encoding.DER))
    engineer = gateway_pki.client("eng-stale", role="engineer")
    for policy, admitted in ((StalePolicy.KEEP, True), (StalePolicy.FAIL_CLOSED, False)):
        running = start_gateway(
            gateway_pki, modbus_upstream.port, crl_urls=(unreachable,), crl_cache=cache, stale=policy
        )
        try:
            modbus = client(engineer, running.port)
            try:
                assert gets_through(modbus) is admitted
            finally:
                modbus.close()
        finally:
            running.stop()
