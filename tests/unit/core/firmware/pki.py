"""Throwaway firmware signers: a root, an intermediate and code-signing leaves of every key type, built
with ``cryptography`` directly so a test can also make the certificates otward would refuse."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Signer:
    key: Any
    certificate: x509.Certificate


def make_key(kind: str) -> Any:
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(65537, int(kind[4:]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    curves = {"ec-p256": ec.SECP256R1, "ec-p384": ec.SECP384R1, "ec-p521": ec.SECP521R1}
    return ec.generate_private_key(curves[kind]())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plant"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def make_ca(
    cn: str, parent: Signer | None = None, *, not_before: datetime = NOW - timedelta(days=1000)
) -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(parent.certificate.subject if parent else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(parent.key if parent else key, hashes.SHA256())
    )
    return Signer(key, certificate)


def make_signer(
    issuer: Signer,
    kind: str = "ec-p256",
    *,
    cn: str = "firmware signer",
    eku: tuple[x509.ObjectIdentifier, ...] | None = (ExtendedKeyUsageOID.CODE_SIGNING,),
    not_before: datetime = NOW - timedelta(days=10),
    lifetime: timedelta = timedelta(days=365),
    key: Any = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> Signer:
    key = key or make_key(kind)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return Signer(key, builder.sign(issuer.key, hash_algorithm or hashes.SHA256()))
