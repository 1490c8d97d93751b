"""Key types otward accepts, and the signature hash that goes with each.

The policy is the one the quality bar fixes: no RSA below 2048 bits, no SHA-1
signatures, and only curves that field devices and OPC UA stacks implement.
"""

from __future__ import annotations

import base64
import enum
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)

from otward.errors import UnsupportedAlgorithmError

__all__ = [
    "KeyType",
    "classify_public_key",
    "public_key_bits",
    "sign_data",
    "signature_hash_for",
    "spki_pin",
    "verify_data",
]


class KeyType(enum.Enum):
    """A key algorithm and size; the value is the name used on the CLI and in profiles."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    EC_P521 = "ec-p521"  # ECDSA with SHA-512: for keys meant to last a device's life
    ED25519 = "ed25519"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa-")

    @property
    def is_ec(self) -> bool:
        return self.value.startswith("ec-")

    @classmethod
    def parse(cls, text: str) -> KeyType:
        """Parse a CLI/config key type name such as ``ec-p256``."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(k.value for k in cls)
            raise UnsupportedAlgorithmError(
                f"unknown key type '{text}' (expected one of: {names})", rule="key-type"
            ) from None


_RSA_SIZES = {2048: KeyType.RSA_2048, 3072: KeyType.RSA_3072, 4096: KeyType.RSA_4096}
_CURVES: dict[str, KeyType] = {
    "secp256r1": KeyType.EC_P256,
    "secp384r1": KeyType.EC_P384,
    "secp521r1": KeyType.EC_P521,
}


def classify_public_key(key: CertificatePublicKeyTypes) -> KeyType:
    """Map a public key to its :class:`KeyType`, refusing anything otward does not issue for.

    RSA keys between the listed sizes are refused too: odd sizes are a sign of a
    broken key generator more often than of a deliberate choice.
    """
    if isinstance(key, rsa.RSAPublicKey):
        size = key.key_size
        if size < 2048:
            raise UnsupportedAlgorithmError(
                f"RSA key of {size} bits is too small (minimum 2048)", rule="key-size"
            )
        if key.public_numbers().e != 65537:
            raise UnsupportedAlgorithmError("RSA public exponent must be 65537", rule="key-exponent")
        try:
            return _RSA_SIZES[size]
        except KeyError:
            raise UnsupportedAlgorithmError(
                f"RSA key of {size} bits is not supported (2048, 3072 or 4096)", rule="key-size"
            ) from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        try:
            return _CURVES[key.curve.name]
        except KeyError:
            raise UnsupportedAlgorithmError(
                f"elliptic curve '{key.curve.name}' is not supported (P-256, P-384 or P-521)",
                rule="key-curve",
            ) from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    raise UnsupportedAlgorithmError(f"public key type {type(key).__name__} is not supported", rule="key-type")


def signature_hash_for(
    key: CertificateIssuerPrivateKeyTypes | CertificateIssuerPublicKeyTypes,
) -> hashes.HashAlgorithm | None:
    """The hash an issuer with this key signs with (``None`` for Ed25519, which hashes internally).

    The hash is matched to the key's strength (SHA-384 for P-384 and RSA above 2048 bits, SHA-512 for
    P-521, as RFC 5480 section 4 pairs them).
    """
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.key_size >= 521:
            return hashes.SHA512()
        return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return hashes.SHA384() if key.key_size >= 3072 else hashes.SHA256()
    raise UnsupportedAlgorithmError(f"issuer key type {type(key).__name__} is not supported", rule="key-type")


def public_key_bits(key: CertificatePublicKeyTypes) -> bytes:
    """The contents of a certificate's subjectPublicKey BIT STRING.

    This is what OCSP's CertID key hash and RFC 7093 key identifiers cover; the
    encodings below are exactly those bits for each key type, so no ASN.1 is
    parsed by hand.
    """
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raise UnsupportedAlgorithmError(f"public key type {type(key).__name__} is not supported", rule="key-type")


def sign_data(key: CertificateIssuerPrivateKeyTypes, data: bytes) -> bytes:
    """A detached signature over ``data``: ECDSA, RSA PKCS#1 v1.5 or Ed25519, hash matched to the key."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    algorithm = signature_hash_for(key)
    assert algorithm is not None  # noqa: S101 - only Ed25519 signs without a separate hash
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    raise UnsupportedAlgorithmError(f"key type {type(key).__name__} cannot sign", rule="key-type")


def verify_data(key: CertificatePublicKeyTypes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is :func:`sign_data`'s signature over ``data`` by ``key``'s private half."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            algorithm = signature_hash_for(key)
            assert algorithm is not None  # noqa: S101
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(algorithm))
            else:
                key.verify(signature, data, padding.PKCS1v15(), algorithm)
            return True
    except InvalidSignature:
        return False
    return False


def spki_pin(key: CertificatePublicKeyTypes) -> str:
    """``sha256/<base64>`` of the DER SubjectPublicKeyInfo: how a device pins its server's key
    (the same digest HPKP and curl's ``--pinnedpubkey`` use)."""
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
