"""A device's factory identity (IEEE 802.1AR IDevID): who made it, and which unit it is.

A manufacturer registers the CA that signs the certificates it puts into its devices' crypto
chips. Such a certificate authenticates one thing: a claimed device's first enrollment (EST
``simpleenroll``, RFC 7030 section 3.3.2). :func:`identify` checks it the way a relying party
must without OpenSSL's help — a path to one of the manufacturer's certificates (each verified by
``cryptography``), the dates, the manufacturer's CRL when one is configured — and reads the unit's
serial number from the subject's serialNumber attribute or from a hardwareModuleName (RFC 4108)
in the subjectAltName. The claim is then found by (manufacturer, serial): two manufacturers' serial
numbers never meet.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import hmac
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AttributeOID, NameOID
from pyasn1.codec.der import decoder
from pyasn1.error import PyAsn1Error
from pyasn1_alt_modules import rfc4108

from otward.core.chain import UNREADABLE_CERTIFICATE, find_path
from otward.errors import AuthenticationError, InvalidRequestError, PolicyViolationError

__all__ = [
    "HARDWARE_MODULE_NAME",
    "MAX_SERIAL",
    "ClaimRecord",
    "FactoryIdentity",
    "ManufacturerRecord",
    "RefusalRule",
    "hardware_serials",
    "identify",
    "load_manufacturer_certificates",
    "matches_public_key",
    "public_key_sha256",
    "validate_crl",
    "validate_possession",
    "validate_serial",
]

HARDWARE_MODULE_NAME = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4")  # id-on-hardwareModuleName
MAX_SERIAL = 128
_SERIAL_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._:/+-")


class RefusalRule(enum.Enum):
    """Why a factory identity is refused: the ``rule`` of the error and of its audit event."""

    UNKNOWN_MANUFACTURER = "idevid-manufacturer"
    EXPIRED = "idevid-expired"
    REVOKED = "idevid-revoked"
    NO_CURRENT_CRL = "idevid-crl"
    NO_SERIAL = "idevid-serial"
    UNCLAIMED = "idevid-unclaimed"
    CLAIMED_ELSEWHERE = "idevid-claimed"
    PUBLIC_KEY = "idevid-public-key"
    CHANNEL_BINDING = "idevid-channel-binding"
    ENROLLED = "idevid-enrolled"


@dataclass(frozen=True)
class ManufacturerRecord:
    """A registered manufacturer: its IDevID CA certificates (each a trust anchor for IDevIDs only),
    and where its CRL comes from. ``crl`` is the newest CRL that verified (DER), None before any."""

    name: str
    ca_certificates: tuple[x509.Certificate, ...]
    created_at: datetime
    crl_url: str | None = None
    crl: bytes | None = None
    crl_required: bool = False  # a CRL was configured: without a current one, enrollment is refused


@dataclass(frozen=True)
class ClaimRecord:
    """An owner's claim on one unit, and once it enrolled, the IDevID that did and its LDevID."""

    manufacturer: str
    serial: str
    owner: str
    claimed_at: datetime
    model: str | None = None
    public_key_sha256: str | None = None
    profile: str | None = None
    device_id: str | None = None
    idevid_issuer: str | None = None
    idevid_serial: str | None = None
    idevid_fingerprint: str | None = None
    enrolled_device_id: str | None = None
    ldevid_serial: str | None = None
    enrolled_at: datetime | None = None


@dataclass(frozen=True)
class FactoryIdentity:
    """An IDevID that verified: the unit (manufacturer, serial) and the certificate itself."""

    manufacturer: str
    serial: str
    issuer: str  # RFC 4514
    certificate_serial: str  # hex
    fingerprint: str  # hex SHA-256 of the DER
    public_key_sha256: str  # hex SHA-256 of the DER SubjectPublicKeyInfo


def public_key_sha256(key: CertificatePublicKeyTypes) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: the "expected public-key hash" of a voucher."""
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def validate_serial(serial: str) -> None:
    """A unit's serial number as a claim stores it: 1-128 printable characters without spaces."""
    if not serial or len(serial) > MAX_SERIAL or not set(serial) <= _SERIAL_CHARACTERS:
        raise InvalidRequestError(
            f"serial '{serial[:64]}' must be 1-{MAX_SERIAL} letters, digits or ._:/+-", rule="claim-serial"
        )


def load_manufacturer_certificates(pem: bytes) -> tuple[x509.Certificate, ...]:
    """The CA certificates of a manufacturer's PEM file; each must be a CA (basicConstraints cA)."""
    try:
        certificates = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError:
        raise InvalidRequestError(
            "the manufacturer CA file holds no PEM certificate", rule="manufacturer-ca"
        ) from None
    for certificate in certificates:
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except (x509.ExtensionNotFound, *UNREADABLE_CERTIFICATE):
            constraints = None
        if constraints is None or not constraints.ca:
            subject = certificate.subject.rfc4514_string()[:128]
            raise PolicyViolationError(
                f"'{subject}' in the manufacturer CA file is not a CA certificate", rule="manufacturer-ca"
            )
    return certificates


def validate_crl(crl_der: bytes, certificates: Sequence[x509.Certificate]) -> x509.CertificateRevocationList:
    """The CRL, when one of ``certificates`` signed it; raises otherwise."""
    try:
        crl = x509.load_der_x509_crl(crl_der)
    except ValueError:
        try:
            crl = x509.load_pem_x509_crl(crl_der)
        except ValueError:
            raise InvalidRequestError(
                "the manufacturer CRL is not a DER or PEM CRL", rule="manufacturer-crl"
            ) from None
    for certificate in certificates:
        if certificate.subject == crl.issuer and crl.is_signature_valid(certificate.public_key()):  # type: ignore[arg-type]
            return crl
    raise PolicyViolationError(
        "the CRL is not signed by any of the manufacturer's CA certificates", rule="manufacturer-crl"
    )


def hardware_serials(certificate: x509.Certificate) -> tuple[str, ...]:
    """The hwSerialNum of each hardwareModuleName (RFC 4108) in the subjectAltName, as text: printable
    ASCII as it is, any other octets as upper-case hex. A value that does not decode as the two-field
    SEQUENCE is refused, not skipped."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    serials = []
    for name in san.get_values_for_type(x509.OtherName):
        if name.type_id != HARDWARE_MODULE_NAME:
            continue
        try:
            decoded, rest = decoder.decode(name.value, asn1Spec=rfc4108.HardwareModuleName())
        except PyAsn1Error:
            decoded, rest = None, b""
        if decoded is None or rest:
            raise AuthenticationError(
                "the IDevID's hardwareModuleName is not a DER SEQUENCE of hwType and hwSerialNum",
                rule=RefusalRule.NO_SERIAL.value,
            )
        raw = bytes(decoded["hwSerialNum"])
        text = (
            raw.decode("ascii") if raw.isascii() and raw.decode("ascii").isprintable() else raw.hex().upper()
        )
        serials.append(text)
    return tuple(serials)


def _subject_serials(certificate: x509.Certificate) -> tuple[str, ...]:
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return tuple(v.value if isinstance(v.value, str) else v.value.decode(errors="replace") for v in values)


def identify(
    certificate: x509.Certificate,
    manufacturers: Sequence[ManufacturerRecord],
    at: datetime,
) -> FactoryIdentity:
    """The unit ``certificate`` (a TLS client certificate) identifies, or an error saying why not.

    Raises :class:`AuthenticationError` with a :class:`RefusalRule` value as ``rule``: no registered
    manufacturer issued it, it is not valid at ``at``, the issuer's CRL lists it (or a configured CRL
    is missing or out of date: fail closed), or it names no serial (or two different ones).
    """
    if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
        raise AuthenticationError(
            f"the IDevID is not valid now (valid {certificate.not_valid_before_utc:%Y-%m-%d} to"
            f" {certificate.not_valid_after_utc:%Y-%m-%d})",
            rule=RefusalRule.EXPIRED.value,
        )
    for manufacturer in manufacturers:
        path = find_path(certificate, (), manufacturer.ca_certificates, at)
        if path is not None:
            _check_revocation(certificate, path[1], manufacturer, at)
            return FactoryIdentity(
                manufacturer=manufacturer.name,
                serial=_serial_of(certificate),
                issuer=certificate.issuer.rfc4514_string()[:1024],
                certificate_serial=f"{certificate.serial_number:x}",
                fingerprint=hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest(),
                public_key_sha256=public_key_sha256(certificate.public_key()),
            )
    raise AuthenticationError(
        f"no registered manufacturer issued the client certificate (issuer"
        f" '{certificate.issuer.rfc4514_string()[:128]}')",
        rule=RefusalRule.UNKNOWN_MANUFACTURER.value,
    )


def _check_revocation(
    certificate: x509.Certificate, issuer: x509.Certificate, manufacturer: ManufacturerRecord, at: datetime
) -> None:
    if not manufacturer.crl_required:
        return
    current = _current_crl(manufacturer.crl, issuer, at) if manufacturer.crl is not None else None
    if current is None:
        raise AuthenticationError(
            f"manufacturer '{manufacturer.name}' has a CRL configured but no current CRL of the IDevID's"
            " issuer; refused until one is loaded (otward manufacturer crl)",
            rule=RefusalRule.NO_CURRENT_CRL.value,
        )
    if certificate.serial_number in current:
        raise AuthenticationError(
            f"the IDevID (serial {certificate.serial_number:x}) is revoked by manufacturer"
            f" '{manufacturer.name}'",
            rule=RefusalRule.REVOKED.value,
        )


def _current_crl(crl_der: bytes, issuer: x509.Certificate, at: datetime) -> frozenset[int] | None:
    """The revoked serials of the CRL when ``issuer`` signed it and it is current at ``at``."""
    read = _verified_crl(crl_der, issuer.public_bytes(serialization.Encoding.DER))
    if read is None:
        return None
    this_update, next_update, revoked = read
    if next_update is None or next_update < at or this_update > at:
        return None
    return revoked


@functools.lru_cache(maxsize=16)
def _verified_crl(
    crl_der: bytes, issuer_der: bytes
) -> tuple[datetime, datetime | None, frozenset[int]] | None:
    """Dates and revoked serials of a CRL that ``issuer`` signed (None otherwise), worked out once per
    CRL and issuer: loading and verifying a large CRL takes tens of milliseconds, and cryptography's
    look-up by serial is a linear scan (NOTES.md)."""
    crl = x509.load_der_x509_crl(crl_der)
    issuer = x509.load_der_x509_certificate(issuer_der)
    if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        return None
    return crl.last_update_utc, crl.next_update_utc, frozenset(entry.serial_number for entry in crl)


def _serial_of(certificate: x509.Certificate) -> str:
    found = set(_subject_serials(certificate)) | set(hardware_serials(certificate))
    if len(found) != 1:
        what = (
            "no serialNumber attribute and no hardwareModuleName" if not found else "different serial numbers"
        )
        raise AuthenticationError(f"the IDevID names {what}", rule=RefusalRule.NO_SERIAL.value)
    serial = found.pop()
    try:
        validate_serial(serial)
    except InvalidRequestError:
        raise AuthenticationError(
            f"the IDevID's serial '{serial[:64]}' is not a serial otward can claim",
            rule=RefusalRule.NO_SERIAL.value,
        ) from None
    return serial


def matches_public_key(claimed: str | None, identity: FactoryIdentity) -> bool:
    """True when the claim expects no key, or exactly the IDevID's (constant time)."""
    return claimed is None or hmac.compare_digest(
        claimed.lower().encode(), identity.public_key_sha256.encode()
    )


def validate_possession(
    csr: x509.CertificateSigningRequest,
    identity: x509.Certificate,
    *,
    tls_version: str | None,
    tls_unique: bytes | None,
) -> str:
    """How the request proves it comes from the chip that did the TLS handshake; raises when it does not.

    - ``idevid-key``: the CSR is for the IDevID's own key, whose possession the handshake proved.
    - ``tls-unique``: a new key, whose CSR carries the connection's tls-unique as challengePassword
      (RFC 7030 section 3.5): it was signed for this TLS session and cannot be replayed over another.
      TLS 1.3 has no tls-unique, and Python's ``ssl`` offers no RFC 9266 tls-exporter, so a new key
      needs a TLS 1.2 connection.

    The CSR's own signature is checked by issuance, as for every request.
    """
    if csr.public_key() == identity.public_key():
        return "idevid-key"
    try:
        offered = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        offered = None
    if tls_unique is None or tls_version != "TLSv1.2":
        raise AuthenticationError(
            f"a request for a new key must be bound to its TLS session with tls-unique (RFC 7030"
            f" section 3.5), which only TLS 1.2 has; this connection is {tls_version or 'not TLS'}:"
            " reconnect with TLS 1.2, or request the certificate for the IDevID key",
            rule=RefusalRule.CHANNEL_BINDING.value,
        )
    expected = base64.b64encode(tls_unique)
    if offered is None or not hmac.compare_digest(bytes(offered).strip(), expected):
        raise AuthenticationError(
            "the CSR's challengePassword is not this TLS session's tls-unique (RFC 7030 section 3.5):"
            " a request made for another connection is not accepted",
            rule=RefusalRule.CHANNEL_BINDING.value,
        )
    return "tls-unique"
