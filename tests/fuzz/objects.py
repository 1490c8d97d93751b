"""Valid objects to mutate: CSRs of every key type and shape otward takes, and how to re-sign them."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509.oid import NameOID

from tests.fuzz.mutate import minimal_length, subtree


@dataclass(frozen=True)
class SignedCsr:
    der: bytes
    key: Any

    def resign(self, info: bytes) -> bytes:
        """A CertificationRequest around ``info`` (any bytes), signed by this request's key with its
        signature algorithm: a mutated request that still passes the self-signature check."""
        return wrap_signed(self.der, info, self.key)


def sign_with(key: Any, data: bytes) -> bytes:
    """Deterministic signatures (RFC 6979 for ECDSA): the same input gives the same bytes, which
    Hypothesis needs to replay and shrink an example."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def wrap_signed(original: bytes, tbs: bytes, key: Any) -> bytes:
    """``original`` (a signed SEQUENCE { tbs, algorithm, BIT STRING }) with ``tbs`` in place of its
    first element and a fresh signature over it."""
    _, outer = subtree(original, [])
    assert outer.children is not None
    algorithm = outer.children[1].encode()
    signature = b"\x00" + sign_with(key, tbs)
    bits = b"\x03" + minimal_length(len(signature)) + signature
    body = tbs + algorithm + bits
    return b"\x30" + minimal_length(len(body)) + body


@cache
def keys() -> dict[str, Any]:
    """Fixed keys, so a derandomized run makes the same inputs every time."""
    rsa_pem = (Path(__file__).parents[1] / "vectors" / "fuzz-rsa2048.key.pem").read_bytes()
    return {
        "p256": ec.derive_private_key(0x5EED_0256, ec.SECP256R1()),
        "p384": ec.derive_private_key(0x5EED_0384, ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))),
        "rsa2048": load_pem_private_key(rsa_pem, None),
    }


def _csr(key: Any, cn: str | None, **options: Any) -> SignedCsr:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    attrs += options.get("subject", [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in options.get("dns", ())]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in options.get("ips", ())]
    names += [x509.UniformResourceIdentifier(u) for u in options.get("uris", ())]
    names += [x509.RFC822Name(e) for e in options.get("emails", ())]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    for extension, critical in options.get("extensions", ()):
        builder = builder.add_extension(extension, critical=critical)
    for oid, value in options.get("attributes", ()):
        builder = builder.add_attribute(oid, value)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm).public_bytes(Encoding.DER)
    _, request = subtree(csr, [0])
    return SignedCsr(wrap_signed(csr, request.encode(), key), key)  # deterministic signature


@cache
def csrs() -> tuple[SignedCsr, ...]:
    """Requests otward accepts for one profile or another, in the shapes devices send."""
    k = keys()
    return (
        _csr(k["p256"], "plc-0001"),
        _csr(k["p256"], "plc.plant.example", dns=("plc.plant.example", "*.plant.example"), ips=("10.1.1.1",)),
        _csr(k["p384"], "hmi-7", uris=("urn:otward:device:hmi-7",), emails=("ops@plant.example",)),
        _csr(k["ed25519"], "sensor-3", ips=("fd00::1",)),
        _csr(
            k["rsa2048"],
            "operator-1",
            subject=[
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ACME Chemicals"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Line 2"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            ],
        ),
        _csr(
            k["p256"],
            "robot-9",
            extensions=[
                (x509.KeyUsage(True, False, False, False, False, False, False, False, False), True),
                (
                    x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.32473.9"), b"\x0c\x02ok"),
                    False,
                ),
                (x509.BasicConstraints(ca=False, path_length=None), False),
            ],
            attributes=[(x509.oid.AttributeOID.CHALLENGE_PASSWORD, b"secret")],
        ),
        _csr(k["p256"], None, dns=("no-subject.example",)),
    )


def resigners() -> list[tuple[bytes, Callable[[bytes], bytes]]]:
    return [(c.der, c.resign) for c in csrs()]


@dataclass(frozen=True)
class FixedCa:
    certificate: x509.Certificate
    key: Any


@cache
def fixed_ca(name: str = "Fuzz CA") -> FixedCa:
    """A self-signed P-256 CA with a fixed key and fixed dates (2026-2036)."""
    from datetime import UTC, datetime

    key = ec.derive_private_key(0x5EED_00CA + len(name), ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ACME Chemicals"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(0x0CA_0000_0000_0001)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2036, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return FixedCa(certificate, key)


@cache
def crls() -> tuple[bytes, ...]:
    """DER CRLs of :func:`fixed_ca`: empty, with entries (reasons, invalidity dates), and with a
    critical issuing distribution point."""
    from datetime import UTC, datetime, timedelta

    ca = fixed_ca()
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def crl(entries: int, *extensions: tuple[x509.ExtensionType, bool]) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.certificate.subject)
            .last_update(now)
            .next_update(now + timedelta(days=7))
            .add_extension(x509.CRLNumber(entries + 1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
            )
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        for serial in range(1, entries + 1):
            revoked = (
                x509.RevokedCertificateBuilder()
                .serial_number(serial << 64)
                .revocation_date(now - timedelta(days=serial))
            )
            if serial % 2:
                revoked = revoked.add_extension(
                    x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False
                )
            if serial % 3 == 0:
                revoked = revoked.add_extension(x509.InvalidityDate(now - timedelta(days=30)), critical=False)
            builder = builder.add_revoked_certificate(revoked.build())
        return builder.sign(ca.key, hashes.SHA256(), ecdsa_deterministic=True).public_bytes(Encoding.DER)

    idp = x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier("http://127.0.0.1:8080/crl/issuing.crl")],
        relative_name=None,
        only_contains_user_certs=True,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    return (crl(0), crl(3), crl(6, (idp, True)))


def resign_crl(tbs: bytes) -> bytes:
    """A CRL around ``tbs`` signed by :func:`fixed_ca` (it passes the signature check)."""
    ca = fixed_ca()
    return wrap_signed(crls()[0], tbs, ca.key)
