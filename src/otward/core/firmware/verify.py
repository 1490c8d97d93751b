"""Verifying a signed manifest and its image: signature, signer, trust, digest, size, anti-rollback.

Two ways to trust a signer. ``otward firmware verify`` finds a certification path from the signer's
certificate to a trust root (a plant's firmware CA), valid at the moment the manifest says it was
signed, so an image signed last year still verifies after the signer's certificate was renewed. A
boot stage trusts the key the previous stage pinned (:func:`verify_pinned`) and nothing else: a boot
ROM has no clock and no CA, only a fused key hash.

Every refusal is an :class:`~otward.errors.OtwardError` whose ``rule`` is the check id of the finding
it becomes (``firmware.signature.invalid``...); :mod:`otward.core.firmware.checks` maps them.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from otward.core.chain import find_path
from otward.core.firmware.envelope import open_signed_content
from otward.core.firmware.manifest import Manifest, key_pin, parse_manifest, parse_pin
from otward.errors import IntegrityError, PolicyViolationError, UnsupportedAlgorithmError

__all__ = [
    "CLOCK_SKEW",
    "ImageFacts",
    "Verified",
    "check_image",
    "check_version",
    "validate_signer_usage",
    "verify_firmware",
    "verify_pinned",
    "verify_trusted",
]

CLOCK_SKEW = timedelta(minutes=5)  # a signing host's clock may run this far ahead of the verifier's
_WEAK_CERT_HASHES = frozenset({"sha1", "md5"})


@dataclass(frozen=True)
class ImageFacts:
    """What was measured of an image: its size and its digest with the manifest's algorithm."""

    size: int
    digest: bytes


@dataclass(frozen=True)
class Verified:
    """A manifest whose signature, signer and (when checked) image and version passed."""

    manifest: Manifest
    signer: x509.Certificate
    algorithm: str
    path: tuple[x509.Certificate, ...] = ()

    @property
    def signer_name(self) -> str:
        return self.signer.subject.rfc4514_string()


def validate_signer_usage(certificate: x509.Certificate) -> None:
    """The signer's certificate must be fit for code signing: an extendedKeyUsage, when present, lists
    codeSigning; a keyUsage, when present, has digitalSignature."""
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CODE_SIGNING not in usages:
            raise PolicyViolationError(
                f"signer {certificate.subject.rfc4514_string()} is not a code-signing certificate "
                "(its extendedKeyUsage lacks codeSigning)",
                rule="firmware.signer.usage",
            )
    except x509.ExtensionNotFound:
        pass
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not key_usage.digital_signature:
            raise PolicyViolationError(
                f"signer {certificate.subject.rfc4514_string()} may not sign (no digitalSignature keyUsage)",
                rule="firmware.signer.usage",
            )
    except x509.ExtensionNotFound:
        pass


def verify_trusted(
    data: bytes, anchors: Sequence[x509.Certificate], now: datetime, clock_skew: timedelta = CLOCK_SKEW
) -> Verified:
    """The manifest in the CMS ``data``, its signature checked and its signer chained to ``anchors``
    at the signing time the manifest states (which may not lie after ``now`` plus ``clock_skew``)."""
    signed = open_signed_content(data)
    manifest = parse_manifest(signed.content)
    validate_signer_usage(signed.signer)
    if manifest.signed_at > now + clock_skew:
        raise PolicyViolationError(
            f"the manifest claims to be signed at {manifest.signed_at.isoformat()}, in the future",
            rule="firmware.chain.untrusted",
        )
    path = find_path(signed.signer, signed.certificates, anchors, manifest.signed_at)
    if path is None:
        raise PolicyViolationError(
            f"signer {signed.signer.subject.rfc4514_string()} does not chain to the trust root "
            f"(or a certificate on the way was not valid at {manifest.signed_at.isoformat()})",
            rule="firmware.chain.untrusted",
        )
    _check_path_algorithms(path[:-1])
    return Verified(manifest, signed.signer, signed.algorithm, tuple(path))


def verify_pinned(data: bytes, pin: str) -> Verified:
    """The manifest in the CMS ``data``, signed by the key whose SPKI SHA-256 is ``pin``."""
    expected = parse_pin(pin)
    signed = open_signed_content(data)
    actual = parse_pin(key_pin(signed.signer.public_key()))
    if not hmac.compare_digest(actual, expected):
        raise PolicyViolationError(
            f"signed by {signed.signer.subject.rfc4514_string()}, not by the pinned key {pin}",
            rule="firmware.signer.unpinned",
        )
    manifest = parse_manifest(signed.content)
    validate_signer_usage(signed.signer)
    return Verified(manifest, signed.signer, signed.algorithm)


def check_image(manifest: Manifest, image: ImageFacts) -> None:
    """The measured image is the one the manifest names (size, then digest in constant time)."""
    if image.size != manifest.size:
        raise IntegrityError(
            f"image is {image.size} bytes, the manifest says {manifest.size}", rule="firmware.image.mismatch"
        )
    if not hmac.compare_digest(image.digest, manifest.digest):
        raise IntegrityError(
            f"image {manifest.digest_algorithm} digest {image.digest.hex()} differs from the manifest's "
            f"{manifest.digest.hex()} (tampered or wrong image)",
            rule="firmware.image.mismatch",
        )


def check_version(manifest: Manifest, minimum: int | None) -> None:
    """Anti-rollback: the manifest's version is at least ``minimum`` (the stored counter)."""
    if minimum is not None and manifest.version < minimum:
        raise PolicyViolationError(
            f"version {manifest.version} is below the minimum {minimum} (a downgrade)",
            rule="firmware.version.rollback",
        )


def verify_firmware(
    data: bytes,
    measure: Callable[[str], ImageFacts],
    anchors: Sequence[x509.Certificate],
    now: datetime,
    min_version: int | None = None,
) -> Verified:
    """Everything ``otward firmware verify`` checks, in order; ``measure`` hashes the image with the
    named algorithm (``sha256``) only once the manifest is authentic."""
    verified = verify_trusted(data, anchors, now)
    check_image(verified.manifest, measure(verified.manifest.hashlib_name))
    check_version(verified.manifest, min_version)
    return verified


def _check_path_algorithms(certificates: Sequence[x509.Certificate]) -> None:
    for certificate in certificates:
        algorithm = certificate.signature_hash_algorithm
        if algorithm is not None and algorithm.name in _WEAK_CERT_HASHES:
            raise UnsupportedAlgorithmError(
                f"certificate {certificate.subject.rfc4514_string()} is signed with {algorithm.name.upper()}",
                rule="firmware.algorithm.weak",
            )
        key = certificate.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            raise UnsupportedAlgorithmError(
                f"certificate {certificate.subject.rfc4514_string()} has an RSA key of {key.key_size} bits",
                rule="firmware.algorithm.weak",
            )
