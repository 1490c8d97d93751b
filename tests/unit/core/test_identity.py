"""Which namespace a client certificate's name belongs to (security review, issue #11 item 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otward.core.identity import ClientName, DeviceName, Namespace, client_name, device_name, device_uri

_KEY = ec.generate_private_key(ec.SECP256R1())


def certificate(
    cn: str | None, *, uris: tuple[str, ...] = (), usages: tuple[x509.ObjectIdentifier, ...] | None = None
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]))
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if uris:
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris])
        builder = builder.add_extension(san, critical=False)
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    return builder.sign(_KEY, hashes.SHA256())


CLIENT_AUTH = (ExtendedKeyUsageOID.CLIENT_AUTH,)


def test_a_device_certificate_names_its_device_and_claims_its_cn_as_a_device():
    cert = certificate("plc-7", uris=(device_uri("acme", "plc-7"),), usages=CLIENT_AUTH)
    assert device_name(cert) == DeviceName("acme", "plc-7")
    assert device_name(cert).uri == "urn:otward:device:acme:plc-7"
    assert client_name(cert) == ClientName(Namespace.DEVICE, "plc-7")


@pytest.mark.parametrize(
    ("cn", "uris"),
    [
        ("hmi-operator", ()),
        ("hmi-operator", ("urn:example:hmi",)),
        ("plc-7", ("urn:otward:device:acme:plc-8",)),  # the CN is not the device id
        ("plc-7", ("urn:otward:device:acme:plc-7", "urn:otward:device:rival:plc-7")),  # two devices
        ("plc-7", ("urn:otward:device::plc-7",)),  # no owner
    ],
    ids=["plain", "other-uri", "cn-differs", "two-device-uris", "no-owner"],
)
def test_anything_else_with_client_auth_is_a_client(cn, uris):
    cert = certificate(cn, uris=uris, usages=CLIENT_AUTH)
    assert device_name(cert) is None
    assert client_name(cert) == ClientName(Namespace.CLIENT, cn)


def test_a_certificate_without_an_eku_can_authenticate_a_client_and_so_claims_its_name():
    assert client_name(certificate("op-1")) == ClientName(Namespace.CLIENT, "op-1")
    assert client_name(certificate("op-1", usages=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,))) is not None


def test_server_only_certificates_and_certificates_without_a_cn_claim_nothing():
    assert client_name(certificate("plc-7", usages=(ExtendedKeyUsageOID.SERVER_AUTH,))) is None
    assert client_name(certificate(None, uris=("urn:example:x",), usages=CLIENT_AUTH)) is None


def test_names_are_compared_case_folded():
    assert ClientName(Namespace.CLIENT, "PLC-7").key == ClientName(Namespace.DEVICE, "plc-7").key
