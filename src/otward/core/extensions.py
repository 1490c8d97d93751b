"""Extensions otward computes itself: key identifiers and the Modbus/TCP Security role.

The Modbus/TCP Security specification (MB-TCP-Security v36) carries the client's
role in a non-critical certificate extension, OID 1.3.6.1.4.1.50316.802.1, whose
value is an ASN.1 UTF8String. DER encoding and decoding go through pyasn1.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char

from otward.core.keys import public_key_bits
from otward.errors import ParseError, PolicyViolationError

__all__ = [
    "MAX_ROLE_LENGTH",
    "MODBUS_ROLE_OID",
    "decode_modbus_role",
    "encode_modbus_role",
    "key_identifier",
    "modbus_role_extension",
    "validate_role_name",
]

MODBUS_ROLE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1")

MAX_ROLE_LENGTH = 128
_ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:/-]{0,127}")


def key_identifier(public_key: CertificatePublicKeyTypes) -> bytes:
    """Key identifier per RFC 7093 section 2 method 1: the leftmost 160 bits of the SHA-256
    of the subjectPublicKey bits. Used for SKI and AKI, so no SHA-1 is computed in issuance."""
    return hashlib.sha256(public_key_bits(public_key)).digest()[:20]


def validate_role_name(role: str) -> None:
    """Raise unless ``role`` is a printable role name of at most 128 characters."""
    if not _ROLE_NAME.fullmatch(role):
        raise PolicyViolationError(
            f"role '{role}' is not a valid role name (1-128 letters, digits, space or ._:/-)",
            rule="modbus-role-syntax",
        )


def encode_modbus_role(role: str) -> bytes:
    """DER of the role as an ASN.1 UTF8String."""
    validate_role_name(role)
    encoded: bytes = der_encoder.encode(char.UTF8String(role))
    return encoded


def decode_modbus_role(value: bytes) -> str:
    """The role from the extension's DER value; anything but a DER UTF8String of a role name of at
    most 128 characters without control characters is refused.

    Some public code writes the role as raw bytes; such certificates are rejected rather than
    guessed at. A UTF8String in BER (a long-form length, say) is refused too: two encodings of one
    role would be two different certificates for the same role.
    """
    try:
        decoded, rest = der_decoder.decode(value, asn1Spec=char.UTF8String())
        canonical = der_encoder.encode(decoded) == value[: len(value) - len(rest)]
        role = str(decoded)
    except (PyAsn1Error, UnicodeError) as exc:
        raise ParseError(
            "modbus role extension is not a DER UTF8String", rule="modbus-role-encoding"
        ) from exc
    if rest:
        raise ParseError("modbus role extension has trailing bytes", rule="modbus-role-encoding")
    if not canonical:
        raise ParseError("modbus role extension is not in DER", rule="modbus-role-encoding")
    if not 1 <= len(role) <= MAX_ROLE_LENGTH or not role.isprintable():
        raise ParseError(
            f"modbus role must be 1-{MAX_ROLE_LENGTH} printable characters", rule="modbus-role-encoding"
        )
    return role


def modbus_role_extension(role: str) -> x509.UnrecognizedExtension:
    """The role extension value ready for a certificate builder."""
    return x509.UnrecognizedExtension(MODBUS_ROLE_OID, encode_modbus_role(role))
