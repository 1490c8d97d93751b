"""``otward assess opcua`` against real asyncua (FreeOpcUa) servers offering SecurityPolicy None,
Basic256Sha256 Sign and SignAndEncrypt, anonymous and user-name tokens (issue 15 item 2)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.assess_certs import TestCa, rsa_key
from tests.conftest import free_port
from tests.integration.assess.conftest import assess
from tests.integration.gateway.conftest import LoopThread

asyncua = pytest.importorskip("asyncua")
from asyncua import Server, ua  # noqa: E402

pytestmark = [
    pytest.mark.interop,
    pytest.mark.filterwarnings(
        "ignore:.*is deprecated. You should use cryptography's X.509 APIs instead:DeprecationWarning"
    ),
]

URI = "urn:acme-chemicals:opcua:reactor-3"
P = ua.SecurityPolicyType


@contextlib.contextmanager
def opcua_server(
    tmp_path: Path, ca: TestCa, policies: list, *, uris=(URI,), self_signed=False, users_only=False
) -> Iterator[str]:
    issued = ca.leaf(
        key=rsa_key(2048),
        uris=uris,
        eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        self_signed=self_signed,
    )
    cert = tmp_path / "server.der"
    cert.write_bytes(issued.certificate.public_bytes(serialization.Encoding.DER))
    _, written = issued.write(tmp_path, "server")
    key = written.rename(tmp_path / "server.key.pem")  # asyncua reads PEM only by this suffix
    url = f"opc.tcp://127.0.0.1:{free_port()}/otward/"
    thread = LoopThread()
    server = thread.call(Server)

    async def start() -> None:
        await server.init()
        server.set_endpoint(url)
        await server.set_application_uri(URI)
        server.set_security_policy(policies)
        if users_only:
            server.set_security_IDs(["Username"])
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        await server.start()

    try:
        thread.run(start())
        try:
            yield url
        finally:
            thread.run(server.stop())
    finally:
        thread.stop()


def test_none_sign_only_and_anonymous_are_flagged(tmp_path: Path):
    ca = TestCa()
    policies = [P.NoSecurity, P.Basic256Sha256_Sign, P.Basic256Sha256_SignAndEncrypt]
    with opcua_server(tmp_path, ca, policies) as url:
        result = assess("opcua", url, "--trust", str(ca.pem(tmp_path)))
    assert result.exit_code == 1
    checks = result.checks()
    assert checks["opcua.security.none"] == "high"
    assert checks["opcua.mode.sign_only"] == "medium"
    assert checks["opcua.token.anonymous"] == "medium"
    assert not any(c.startswith("opcua.cert.") for c in checks)  # issued by the trusted CA, with the URI
    listing = result.evidence("opcua.endpoints")
    for shown in ("None/None", "Basic256Sha256/Sign ", "Basic256Sha256/SignAndEncrypt"):
        assert shown in listing


def test_a_self_signed_certificate_without_the_uri_fails_the_certificate_checks(tmp_path: Path):
    ca = TestCa()
    with opcua_server(tmp_path, ca, [P.Basic256Sha256_SignAndEncrypt], uris=(), self_signed=True) as url:
        result = assess("opcua", url, "--trust", str(ca.pem(tmp_path)))
    assert result.exit_code == 1
    checks = result.checks()
    assert checks["opcua.cert.self_signed"] == "high"
    assert checks["opcua.cert.application_uri"] == "medium"
    assert "opcua.security.none" not in checks


def test_basic256sha256_sign_and_encrypt_with_users_is_the_good_case(tmp_path: Path):
    ca = TestCa()
    policies = [P.Basic256Sha256_SignAndEncrypt, P.Aes256Sha256RsaPss_SignAndEncrypt]
    with opcua_server(tmp_path, ca, policies, users_only=True) as url:
        result = assess("opcua", url, "--trust", str(ca.pem(tmp_path)))
    assert result.exit_code == 0, result.output
    assert set(result.checks().values()) == {"info"}


def test_a_dead_server_is_a_finding(tmp_path: Path):
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    result = assess("opcua", url, "--timeout", "5")
    assert result.exit_code == 0
    assert result.checks() == {"opcua.unreachable": "medium"}
