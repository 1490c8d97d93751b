"""The pure judgements of the network checks: TLS observations, OPC UA endpoints, Modbus answers, and
targets files."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from otward.core.assess.certificates import CertificateExpectations
from otward.core.assess.findings import Severity
from otward.core.assess.modbus import ModbusObservation, assess_modbus
from otward.core.assess.opcua import (
    POLICY_PREFIX,
    OpcUaEndpoint,
    OpcUaObservation,
    UserToken,
    assess_opcua,
    parse_certificate_blob,
)
from otward.core.assess.targets import parse_target, parse_targets
from otward.core.assess.tls import (
    CipherSuite,
    ClientAuth,
    ProtocolVersion,
    SelfSignedClient,
    TlsObservation,
    assess_tls,
    suite_weaknesses,
)
from tests.assess_certs import TestCa

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
V = ProtocolVersion


def suite(
    name, version=V.TLS1_2, aead=False, kea="kx-ecdhe", auth="auth-rsa", digest="sha1", symmetric="aes"
):
    return CipherSuite(name, version, aead, kea, auth, digest, symmetric)


@pytest.mark.parametrize(
    ("cipher", "expected"),
    [
        (suite("ECDHE-RSA-AES128-GCM-SHA256", aead=True, digest=None), ()),
        (suite("ECDHE-RSA-AES128-SHA256", digest="sha256"), ("non_aead",)),
        (suite("ECDHE-RSA-AES128-SHA"), ("non_aead", "cbc_sha1")),
        (suite("AES128-GCM-SHA256", aead=True, kea="kx-rsa", digest=None), ("no_forward_secrecy",)),
        (
            suite("NULL-SHA256", kea="kx-rsa", digest="sha256", symmetric=None),
            ("null", "no_forward_secrecy", "non_aead"),
        ),
        (
            suite("EXP-RC4-MD5", kea="kx-rsa", digest="md5"),
            ("export", "rc4", "no_forward_secrecy", "non_aead", "cbc_sha1"),
        ),
        (suite("DES-CBC3-SHA", kea="kx-rsa"), ("des", "no_forward_secrecy", "non_aead", "cbc_sha1")),
        (
            suite("ADH-AES128-GCM-SHA256", aead=True, kea="kx-dhe", auth="auth-null", digest=None),
            ("anonymous",),
        ),
        (suite("TLS_AES_128_GCM_SHA256", V.TLS1_3, aead=True, kea="kx-any", digest=None), ()),
    ],
)
def test_suite_weaknesses(cipher, expected):
    assert suite_weaknesses(cipher) == expected


def observation(**kwargs) -> TlsObservation:
    ca = kwargs.pop("ca")
    base = {
        "target": "plc-1:443",
        "protocols": {V.SSL3: None, V.TLS1_0: False, V.TLS1_1: False, V.TLS1_2: True, V.TLS1_3: True},
        "suites": (suite("ECDHE-ECDSA-AES128-GCM-SHA256", aead=True, auth="auth-ecdsa", digest=None),),
        "chain": (ca.leaf().certificate,),
        "client_auth": ClientAuth.REQUIRED,
        "self_signed_client": SelfSignedClient.REFUSED,
    }
    return TlsObservation(**{**base, **kwargs})


def severities(obs: TlsObservation, ca: TestCa) -> dict[str, Severity]:
    found = assess_tls(
        obs, CertificateExpectations(trust=(ca.certificate,), server_name="localhost"), now=NOW
    )
    return {f.check: f.severity for f in found}


def test_a_hardened_endpoint_has_only_info():
    ca = TestCa(NOW)
    assert severities(observation(ca=ca), ca) == {
        "tls.scan.not_testable": Severity.INFO,
        "tls.summary": Severity.INFO,
    }


@pytest.mark.parametrize(
    ("change", "check", "severity"),
    [
        ({"protocols": {V.TLS1_0: True, V.TLS1_2: True}}, "tls.protocol.legacy", Severity.HIGH),
        ({"protocols": {V.TLS1_2: True}}, "tls.protocol.no_tls13", Severity.LOW),
        ({"suites": (suite("DES-CBC3-SHA", kea="kx-rsa"),)}, "tls.cipher.des", Severity.HIGH),
        ({"client_auth": ClientAuth.NOT_REQUESTED}, "tls.client_auth.absent", Severity.MEDIUM),
        ({"client_auth": ClientAuth.OPTIONAL}, "tls.client_auth.optional", Severity.LOW),
        ({"self_signed_client": SelfSignedClient.ACCEPTED}, "tls.client_auth.unverified", Severity.HIGH),
        ({"incomplete": "out of time"}, "tls.scan.incomplete", Severity.MEDIUM),
        (
            {"protocols": {}, "chain": (), "failure": "wrong version number"},
            "tls.handshake.failed",
            Severity.MEDIUM,
        ),
    ],
)
def test_each_observation_maps_to_its_finding(change, check, severity):
    ca = TestCa(NOW)
    assert severities(observation(ca=ca, **change), ca)[check] is severity


def endpoint(policy="Basic256Sha256", mode="SignAndEncrypt", tokens=("UserName",), certificate=b""):
    return OpcUaEndpoint(
        "opc.tcp://reactor-3:4840",
        POLICY_PREFIX + policy,
        mode,
        tuple(UserToken(t) for t in tokens),
        certificate,
        "urn:acme:opcua:reactor-3",
    )


def opcua(*endpoints, trust=()):
    found = assess_opcua(OpcUaObservation("opc.tcp://reactor-3:4840", endpoints), trust, "reactor-3", now=NOW)
    return {f.check: f.severity for f in found}


def test_opcua_policies_modes_and_tokens():
    assert opcua(endpoint()) == {"opcua.endpoints": Severity.INFO}
    assert opcua(endpoint("None", "None", ("Anonymous", "UserName"))) == {
        "opcua.endpoints": Severity.INFO,
        "opcua.security.none": Severity.HIGH,
        "opcua.token.anonymous": Severity.MEDIUM,
        "opcua.token.plaintext_password": Severity.HIGH,
    }
    assert (
        opcua(endpoint("Basic128Rsa15"), endpoint("Basic256", "Sign"))["opcua.policy.deprecated"]
        is Severity.HIGH
    )
    assert opcua(endpoint(mode="Sign"))["opcua.mode.sign_only"] is Severity.MEDIUM
    assert opcua() == {"opcua.endpoints.none": Severity.MEDIUM}


def test_opcua_certificate_checks_reuse_the_core_and_want_the_uri():
    from cryptography.hazmat.primitives.serialization import Encoding

    ca = TestCa(NOW)
    good = ca.leaf(dns=("reactor-3",), uris=("urn:acme:opcua:reactor-3",)).certificate
    der = good.public_bytes(Encoding.DER)
    assert opcua(endpoint(certificate=der), trust=(ca.certificate,)) == {"opcua.endpoints": Severity.INFO}
    chain = der + ca.certificate.public_bytes(Encoding.DER)
    assert parse_certificate_blob(chain) == (good, ca.certificate)
    no_uri = ca.leaf(dns=("reactor-3",)).certificate.public_bytes(Encoding.DER)
    assert (
        opcua(endpoint(certificate=no_uri), trust=(ca.certificate,))["opcua.cert.application_uri"]
        is Severity.MEDIUM
    )
    assert opcua(endpoint(certificate=der))["opcua.cert.untrusted"] is Severity.HIGH
    assert opcua(endpoint(certificate=b"\x30\x03junk"))["opcua.cert.unreadable"] is Severity.HIGH
    with pytest.raises(ValueError, match="exceeds"):
        parse_certificate_blob(b"\x30" * (65 * 1024))


def test_modbus():
    def checks(obs):
        return {f.check: f.severity for f in assess_modbus(obs)}

    assert checks(ModbusObservation("plc-1:502", "FC 3 answered")) == {"modbus.plaintext": Severity.HIGH}
    assert checks(ModbusObservation("gw:802", None, "TLSv1.3", True)) == {"modbus.tls": Severity.INFO}
    assert checks(ModbusObservation("gw:802", None, "TLSv1.3", False)) == {
        "modbus.tls": Severity.INFO,
        "modbus.tls.no_client_auth": Severity.MEDIUM,
    }
    assert checks(ModbusObservation("x:502", None)) == {"modbus.no_answer": Severity.LOW}


def test_targets_plain_lines_comments_and_duplicates():
    text = "# plant A\nplc-1:502\n\n10.0.0.7   # boiler\n[fe80::1]:1502\nplc-1:502\nfe80::2\n"
    labels = [t.label for t in parse_targets(text, "modbus")]
    assert labels == ["plc-1:502", "10.0.0.7:502", "[fe80::1]:1502", "[fe80::2]:502"]


def test_targets_csv_from_an_inventory():
    text = "Name,IP Address,Port,Vendor\nreactor-3,10.0.0.3,4841,ACME\nboiler,10.0.0.4,,ACME\n"
    targets = parse_targets(text, "opcua")
    assert [(t.label, t.name) for t in targets] == [
        ("opc.tcp://10.0.0.3:4841", "reactor-3"),
        ("opc.tcp://10.0.0.4:4840", "boiler"),
    ]
    assert [t.label for t in parse_targets("host\nplc-1\n", "tls")] == ["plc-1:443"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no targets"),
        ("plc-1:99999\n", "line 1: .*port"),
        ("ok:1\nbad host:1\n", "line 2"),
        ("name,port\nx,1\n", "no host/address column"),
    ],
)
def test_targets_errors_name_the_line(text, message):
    with pytest.raises(ValueError, match=message):
        parse_targets(text, "tls", "t.txt")


def test_single_targets():
    assert (
        parse_target("opc.tcp://reactor-3/UA/Server", "opcua").label == "opc.tcp://reactor-3:4840/UA/Server"
    )
    with pytest.raises(ValueError, match=r"opc\.tcp"):
        parse_target("http://x", "opcua")
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_target("plc-1", "tls", port_required=True)
