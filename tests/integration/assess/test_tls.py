"""``otward assess tls`` against real Python ``ssl`` servers with good and weak configurations
(issue 15 items 1, 6, 7); exit status 1 exactly when a high finding exists."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from otward.adapters.assess.tls_probe import local_untestable
from otward.adapters.tls import server_context as otward_server_context
from otward.core.assess.tls import ProtocolVersion
from tests.assess_certs import TestCa, load_sha1_vector, rsa_key
from tests.conftest import build_csr, free_port, make_key, write_key
from tests.integration.assess.conftest import assess, server_context, tls_server


@pytest.fixture(scope="module")
def ca() -> TestCa:
    return TestCa()


def high(result) -> set[str]:
    return {check for check, severity in result.checks().items() if severity == "high"}


def test_an_otward_issued_listener_with_mutual_tls_is_the_good_case(sqlite_pki, tmp_path: Path):
    """A certificate from a real otward installation, otward's own listener policy (TLS 1.2+, ECDHE +
    AEAD, client certificates required and verified) and --trust the installation's chain."""
    issuing = sqlite_pki.authorities.get("issuing")
    trust = tmp_path / "trust.pem"
    trust.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issuing.chain))
    key = make_key()
    issued = sqlite_pki.issuance.issue(
        build_csr(key, cn="127.0.0.1", dns=("localhost",), ips=("127.0.0.1",)), profile="tls-server"
    )
    certificate = tmp_path / "server.pem"
    certificate.write_text(issued.pem)
    key_file = write_key(tmp_path / "server.key", key)
    context = otward_server_context(certificate, key_file, client_ca=trust)
    with tls_server(context) as server:
        result = assess("tls", server.address, "--trust", str(trust))
    assert result.exit_code == 0, result.output
    assert {s for s in result.checks().values()} == {"info"}, result.checks()
    summary = result.evidence("tls.summary")
    assert "client certificates: required, a self-signed one refused" in summary
    assert "TLSv1.2, TLSv1.3" in summary

    # the same listener without client certificates: at most medium, so the gate passes
    with tls_server(otward_server_context(certificate, key_file, client_ca=None)) as server:
        result = assess("tls", server.address, "--trust", str(trust))
    assert result.exit_code == 0
    assert result.checks()["tls.client_auth.absent"] == "medium"


def test_tls_1_0_is_high(ca, tmp_path: Path):
    if not local_untestable()[1][ProtocolVersion.TLS1_0]:
        pytest.skip("this OpenSSL build cannot offer TLS 1.0 even at security level 0")
    cert, key = ca.leaf().write(tmp_path, "server")
    context = server_context(cert, key, minimum=ssl.TLSVersion.TLSv1, ciphers="DEFAULT:@SECLEVEL=0")
    with tls_server(context) as server:
        result = assess("tls", server.address, "--trust", str(ca.pem(tmp_path)))
    assert result.exit_code == 1
    assert high(result) == {"tls.protocol.legacy"}
    assert "TLSv1, TLSv1.1" in result.evidence("tls.protocol.legacy")


@pytest.mark.parametrize(
    ("make", "ciphers", "expected"),
    [
        (lambda ca: ca.leaf(self_signed=True), None, {"tls.cert.self_signed"}),
        (
            lambda ca: ca.leaf(valid_from=timedelta(days=-30), valid_for=timedelta(days=10)),
            None,
            {"tls.cert.expired"},
        ),
        (lambda ca: ca.leaf(valid_from=timedelta(days=3)), None, {"tls.cert.not_yet_valid"}),
        (lambda ca: ca.leaf(key=rsa_key(1024)), "DEFAULT:@SECLEVEL=0", {"tls.cert.weak_key"}),
        (lambda ca: ca.leaf(dns=("plc-9.plant.example",), ips=()), None, {"tls.cert.hostname_mismatch"}),
        (lambda ca: TestCa(cn="rival root").leaf(), None, {"tls.cert.untrusted"}),
    ],
    ids=["self-signed", "expired", "not-yet-valid", "rsa-1024", "hostname-mismatch", "unknown-root"],
)
def test_certificate_failures_are_high(ca, tmp_path: Path, make, ciphers, expected):
    cert, key = make(ca).write(tmp_path, "server")
    with tls_server(server_context(cert, key, ciphers=ciphers)) as server:
        result = assess("tls", server.address, "--trust", str(ca.pem(tmp_path)))
    assert result.exit_code == 1, result.output
    assert high(result) == expected


def test_sha1_signed_certificate_is_high(tmp_path: Path):
    ca, _, cert, key = load_sha1_vector()
    trust = tmp_path / "ca.pem"
    trust.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    with tls_server(server_context(cert, key, ciphers="DEFAULT:@SECLEVEL=0")) as server:
        result = assess("tls", server.address, "--trust", str(trust))
    assert result.exit_code == 1
    assert "tls.cert.weak_signature" in high(result)


def test_servername_is_sent_and_checked(ca, tmp_path: Path):
    cert, key = ca.leaf(dns=("localhost",), ips=()).write(tmp_path, "server")
    trust = ca.pem(tmp_path)
    with tls_server(server_context(cert, key)) as server:
        mismatch = assess("tls", server.address, "--trust", str(trust))
        named = assess("tls", server.address, "--trust", str(trust), "--servername", "localhost")
    assert "tls.cert.hostname_mismatch" in mismatch.checks()
    assert "tls.cert.hostname_mismatch" not in named.checks()


def test_weak_suites_are_found_one_by_one(ca, tmp_path: Path):
    cert, key = ca.leaf(key=rsa_key(2048)).write(tmp_path, "server")
    ciphers = "NULL-SHA256:AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0"
    context = server_context(cert, key, maximum=ssl.TLSVersion.TLSv1_2, ciphers=ciphers)
    with tls_server(context) as server:
        result = assess("tls", server.address, "--trust", str(ca.pem(tmp_path)))
    assert result.exit_code == 1
    checks = result.checks()
    assert checks["tls.cipher.null"] == "high"
    assert checks["tls.cipher.cbc_sha1"] == "medium"
    assert checks["tls.cipher.no_forward_secrecy"] == "medium"
    assert checks["tls.protocol.no_tls13"] == "low"
    summary = result.evidence("tls.summary")
    for suite in ("NULL-SHA256", "AES128-SHA", "ECDHE-RSA-AES128-GCM-SHA256"):
        assert f"{suite} (TLSv1.2)" in summary
    assert "RC4" in result.evidence("tls.scan.not_testable")  # this OpenSSL cannot offer RC4


def test_optional_client_certificates_are_low(ca, tmp_path: Path):
    cert, key = ca.leaf().write(tmp_path, "server")
    trust = ca.pem(tmp_path)
    context = server_context(cert, key, client_ca=trust, verify=ssl.CERT_OPTIONAL)
    with tls_server(context) as server:
        result = assess("tls", server.address, "--trust", str(trust))
    assert result.exit_code == 0
    assert result.checks()["tls.client_auth.optional"] == "low"
    assert "a self-signed one refused" in result.evidence("tls.summary")


@pytest.mark.interop
def test_a_server_that_requests_but_does_not_verify_client_certificates_is_high(ca, tmp_path: Path):
    """``openssl s_server -verify 1`` asks for a client certificate and carries on whatever it gets."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = ca.leaf().write(tmp_path, "server")
    port = free_port()
    server = subprocess.Popen(
        [
            openssl,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-verify",
            "1",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("ACCEPT"):
                break
        result = assess("tls", f"127.0.0.1:{port}", "--trust", str(ca.pem(tmp_path)), "--timeout", "60")
    finally:
        server.kill()
        server.wait()
        for stream in (server.stdin, server.stdout):
            if stream is not None:
                stream.close()
    assert result.exit_code == 1
    assert result.checks()["tls.client_auth.unverified"] == "high"


def test_targets_file_with_a_dead_target(ca, tmp_path: Path):
    cert, key = ca.leaf().write(tmp_path, "server")
    dead = free_port()
    out = tmp_path / "findings.json"
    with tls_server(server_context(cert, key)) as server:
        targets = tmp_path / "targets.csv"
        targets.write_text(f"name,host,port\nhmi-1,127.0.0.1,{server.port}\nplc-dead,127.0.0.1,{dead}\n")
        result = assess(
            "tls",
            "--targets",
            str(targets),
            "--trust",
            str(ca.pem(tmp_path)),
            "--concurrency",
            "2",
            "--timeout",
            "20",
            "--out",
            str(out),
        )
    assert result.exit_code == 0  # unreachable is medium, the live target has no high finding
    assert result.document["targets"] == [server.address, f"127.0.0.1:{dead}"]
    assert result.checks(f"127.0.0.1:{dead}") == {"tls.unreachable": "medium"}
    assert "plc-dead" in result.evidence("tls.unreachable")
    assert "tls.summary" in result.checks(server.address)
    assert out.read_text() == result.output


def test_usage_errors():
    from typer.testing import CliRunner

    from otward.cli.app import app

    runner = CliRunner()
    assert runner.invoke(app, ["assess", "tls"]).exit_code == 2
    assert runner.invoke(app, ["assess", "tls", "plc-1"]).exit_code == 2  # TLS needs a port
    assert runner.invoke(app, ["assess", "tls", "a:1", "--targets", "x"]).exit_code == 2
    missing = runner.invoke(app, ["assess", "tls", "--targets", "/nonexistent/targets.txt"])
    assert missing.exit_code == 1
    assert "nonexistent" in missing.output


def test_without_trust_the_system_bundle_is_used(ca, tmp_path: Path):
    """No --trust: the system's CA bundle, which knows nothing of a plant CA."""
    cert, key = ca.leaf().write(tmp_path, "server")
    with tls_server(server_context(cert, key)) as server:
        result = assess("tls", server.address)
    assert result.exit_code == 1
    assert high(result) == {"tls.cert.untrusted"}


def test_a_tls_1_2_only_server_requiring_client_certificates(ca, tmp_path: Path):
    """TLS 1.2 ends the handshake without a client certificate: the chain and the accepted versions
    and suites are still read (from the ServerHello and Certificate before the refusal)."""
    cert, key = ca.leaf().write(tmp_path, "server")
    trust = ca.pem(tmp_path)
    context = server_context(
        cert, key, maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE+AESGCM", client_ca=trust
    )
    with tls_server(context) as server:
        result = assess("tls", server.address, "--trust", str(trust))
    assert result.exit_code == 0
    assert result.checks() == {
        "tls.protocol.no_tls13": "low",
        "tls.scan.not_testable": "info",
        "tls.summary": "info",
    }
    summary = result.evidence("tls.summary")
    assert "versions TLSv1.2;" in summary
    assert "ECDHE-ECDSA-AES256-GCM-SHA384 (TLSv1.2)" in summary
    assert "client certificates: required, a self-signed one refused" in summary
