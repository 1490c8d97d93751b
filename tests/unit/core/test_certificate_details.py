from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from otward.core.certificate_details import (
    describe_extensions,
    describe_public_key,
    sha256_fingerprint,
)
from otward.core.extensions import MODBUS_ROLE_OID, encode_modbus_role

NOW = datetime(2026, 12, 1, tzinfo=UTC)
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")


def _certificate(key, extensions: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:  # type: ignore[no-untyped-def]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc-7")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=30))
    )
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


@pytest.fixture(scope="module")
def everything() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return _certificate(
        key,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=True,
                    decipher_only=False,
                ),
                True,
            ),
            (
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, x509.ObjectIdentifier("1.2.3.4")]),
                False,
            ),
            (
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("plc-7.plant.example"),
                        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                        x509.UniformResourceIdentifier("urn:otward:device:line-2:plc-7"),
                        x509.RFC822Name("ops@plant.example"),
                    ]
                ),
                False,
            ),
            (x509.SubjectKeyIdentifier(bytes.fromhex("0a0b0c")), False),
            (x509.AuthorityKeyIdentifier(bytes.fromhex("0d0e0f"), None, None), False),
            (
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier("http://pki.plant.example/crl/issuing.crl")],
                            None,
                            None,
                            None,
                        )
                    ]
                ),
                False,
            ),
            (
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier("http://pki.plant.example/ocsp"),
                        ),
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.CA_ISSUERS,
                            x509.UniformResourceIdentifier("http://pki.plant.example/ca.crt"),
                        ),
                    ]
                ),
                False,
            ),
            (
                x509.CertificatePolicies(
                    [
                        x509.PolicyInformation(
                            x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"),
                            ["https://pki.plant.example/cps", x509.UserNotice(None, "plant use only")],
                        )
                    ]
                ),
                False,
            ),
            (
                x509.NameConstraints(
                    permitted_subtrees=[x509.DNSName("plant.example")], excluded_subtrees=None
                ),
                True,
            ),
            (x509.UnrecognizedExtension(MODBUS_ROLE_OID, encode_modbus_role("Operator")), False),
            (x509.UnrecognizedExtension(UNKNOWN_OID, b"\x04\x02\xca\xfe"), True),
        ],
    )


def _by_name(certificate: x509.Certificate) -> dict[str, tuple[bool, tuple[str, ...]]]:
    return {d.name: (d.critical, d.lines) for d in describe_extensions(certificate)}


def test_every_extension_is_told_in_words(everything: x509.Certificate) -> None:
    described = _by_name(everything)
    assert described["Basic constraints"] == (True, ("certificate authority: yes", "path length: 0"))
    assert described["Key usage"] == (
        True,
        ("digital signature", "key agreement", "certificate signing", "CRL signing", "encipher only"),
    )
    assert described["Extended key usage"][1] == ("TLS client authentication (1.3.6.1.5.5.7.3.2)", "1.2.3.4")
    assert described["Subject alternative names"][1] == (
        "DNS name: plc-7.plant.example",
        "IP address: 192.0.2.7",
        "URI: urn:otward:device:line-2:plc-7",
        "email: ops@plant.example",
    )
    assert described["Subject key identifier"][1] == ("key identifier: 0a:0b:0c",)
    assert described["Authority key identifier"][1] == ("key identifier: 0d:0e:0f",)
    assert described["CRL distribution points"][1] == ("URI: http://pki.plant.example/crl/issuing.crl",)
    assert described["Authority information access"][1] == (
        "OCSP responder: URI: http://pki.plant.example/ocsp",
        "CA issuers: URI: http://pki.plant.example/ca.crt",
    )
    assert described["Certificate policies"][1] == (
        "policy 1.3.6.1.4.1.99999.7",
        "  practice statement (CPS): https://pki.plant.example/cps",
        "  user notice: plant use only",
    )
    assert described["Name constraints"] == (True, ("permitted: DNS name: plant.example",))
    assert described["Modbus/TCP Security role"] == (False, ("role: Operator",))
    assert described["Unknown extension"] == (True, ("DER: 0402cafe",))
    unknown = next(d for d in describe_extensions(everything) if d.name == "Unknown extension")
    assert unknown.oid == UNKNOWN_OID.dotted_string


def test_a_role_that_is_not_a_der_utf8string_is_shown_as_such() -> None:
    raw = x509.UnrecognizedExtension(MODBUS_ROLE_OID, b"Operator")
    certificate = _certificate(ec.generate_private_key(ec.SECP256R1()), [(raw, False)])
    (critical, lines) = _by_name(certificate)["Modbus/TCP Security role"]
    assert not critical
    assert lines[0].startswith("not a valid role (")
    assert lines[0].endswith(b"Operator".hex())


def test_an_end_entity_and_a_certificate_without_extensions() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(key, [(x509.BasicConstraints(ca=False, path_length=None), True)])
    assert _by_name(leaf)["Basic constraints"] == (True, ("certificate authority: no (end entity)",))
    assert describe_extensions(_certificate(key, [])) == ()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "EC P-256 (secp256r1)"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "EC P-384 (secp384r1)"),
        (lambda: rsa.generate_private_key(65537, 2048), "RSA 2048 bits"),
        (ed25519.Ed25519PrivateKey.generate, "Ed25519"),
    ],
    ids=["p256", "p384", "rsa", "ed25519"],
)
def test_key_type_and_size(key, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert describe_public_key(_certificate(key(), [])) == expected


def test_fingerprint_is_the_sha256_of_the_der(everything: x509.Certificate) -> None:
    digest = hashlib.sha256(everything.public_bytes(Encoding.DER)).hexdigest().upper()
    assert sha256_fingerprint(everything).replace(":", "") == digest
    assert len(sha256_fingerprint(everything).split(":")) == 32


def test_the_rarer_extensions_are_decoded_too() -> None:
    uri = x509.UniformResourceIdentifier
    issuer = x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old Root")]))
    certificate = _certificate(
        ec.generate_private_key(ec.SECP256K1()),
        [
            (x509.IssuerAlternativeName([x509.RegisteredID(x509.ObjectIdentifier("1.2.3"))]), False),
            (x509.AuthorityKeyIdentifier(None, [issuer], 0x2A), False),
            (
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            None,
                            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "CRL1")]),
                            frozenset({x509.ReasonFlags.key_compromise}),
                            [issuer],
                        )
                    ]
                ),
                False,
            ),
            (
                x509.FreshestCRL(
                    [x509.DistributionPoint([uri("http://pki.example/delta.crl")], None, None, None)]
                ),
                False,
            ),
            (
                x509.SubjectInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.ObjectIdentifier("1.3.6.1.5.5.7.48.5"), uri("http://pki.example/r")
                        )
                    ]
                ),
                False,
            ),
            (
                x509.CertificatePolicies(
                    [
                        x509.PolicyInformation(
                            x509.ObjectIdentifier("2.5.29.32.0"),
                            [x509.UserNotice(x509.NoticeReference("ACME", [1]), None)],
                        )
                    ]
                ),
                False,
            ),
            (
                x509.NameConstraints(
                    permitted_subtrees=None, excluded_subtrees=[x509.DNSName("evil.example")]
                ),
                True,
            ),
            (x509.OCSPNoCheck(), False),
            (x509.PolicyConstraints(require_explicit_policy=1, inhibit_policy_mapping=2), True),
            (x509.InhibitAnyPolicy(3), True),
            (x509.TLSFeature([x509.TLSFeatureType.status_request]), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False),
            (x509.PrecertPoison(), True),
        ],
    )
    described = _by_name(certificate)
    assert described["Issuer alternative names"][1] == ("registered ID: 1.2.3",)
    assert described["Authority key identifier"][1] == (
        "issuer: directory name: CN=Old Root",
        "issuer serial: 2a",
    )
    assert described["CRL distribution points"][1] == (
        "relative name: CN=CRL1",
        "only for reasons: keyCompromise",
        "CRL issuer: directory name: CN=Old Root",
    )
    assert described["Freshest CRL (delta CRLs)"][1] == ("URI: http://pki.example/delta.crl",)
    assert described["Subject information access"][1][0].endswith("URI: http://pki.example/r")
    assert described["Certificate policies"][1][1] == "  user notice (by reference)"
    assert described["Name constraints"] == (True, ("excluded: DNS name: evil.example",))
    assert described["OCSP no check"][0] is False
    assert described["Policy constraints"][1] == (
        "require explicit policy after 1 certificates",
        "inhibit policy mapping after 2 certificates",
    )
    assert described["Inhibit anyPolicy"][1] == ("anyPolicy allowed for 3 more certificates",)
    assert described["TLS feature (OCSP must-staple)"][1] == ("TLS feature: status_request",)
    assert described["Extended key usage"][1] == ("OCSP signing (1.3.6.1.5.5.7.3.9)",)
    poison = next(d for d in describe_extensions(certificate) if d.oid == "1.3.6.1.4.1.11129.2.4.3")
    assert poison.name != "Unknown extension"
    assert poison.critical
    assert poison.lines == ("DER: 0500",)
    assert describe_public_key(certificate) == "EC secp256k1 (256 bits)"
