"""A certificate told in words for people: its key, fingerprint and every extension decoded.

The console's details page shows these; an administrator reads "TLS client authentication"
instead of ``1.3.6.1.5.5.7.3.2``. Everything is read through ``cryptography``'s x509 objects (no
ASN.1 of our own); an extension it does not know is shown as its OID, critical flag and DER in hex.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from otward.core.extensions import MODBUS_ROLE_OID, decode_modbus_role
from otward.errors import ParseError

__all__ = [
    "ExtensionDescription",
    "describe_extensions",
    "describe_general_name",
    "describe_public_key",
    "sha256_fingerprint",
]


@dataclass(frozen=True)
class ExtensionDescription:
    """One extension: its name, dotted OID, critical flag and what it says, one line per fact."""

    name: str
    oid: str
    critical: bool
    lines: tuple[str, ...]


def sha256_fingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 of the DER, as colon-separated upper-case hex (the way openssl prints it)."""
    digest = hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest()
    return _colon_hex(digest).upper()


def describe_public_key(certificate: x509.Certificate) -> str:
    """Key type and size, e.g. ``EC P-256 (secp256r1)`` or ``RSA 2048 bits``."""
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        label = _CURVES.get(key.curve.name)
        return f"EC {label} ({key.curve.name})" if label else f"EC {key.curve.name} ({key.key_size} bits)"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size} bits"
    return type(key).__name__


def describe_general_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS name: {name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP address: {name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI: {name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email: {name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"directory name: {name.value.rfc4514_string()}"
    if isinstance(name, x509.RegisteredID):
        return f"registered ID: {_oid(name.value)}"
    if isinstance(name, x509.OtherName):
        return f"other name {_oid(name.type_id)}: {name.value.hex()}"
    return str(name)  # pragma: no cover - the GeneralName types are all handled above


def describe_extensions(certificate: x509.Certificate) -> tuple[ExtensionDescription, ...]:
    """Every extension in the certificate's order. A certificate whose extensions cryptography
    refuses to parse (a duplicate, a malformed value) yields one entry saying so, not an error."""
    try:
        extensions = list(certificate.extensions)
    except ValueError as exc:
        return (ExtensionDescription("Extensions could not be decoded", "", False, (str(exc),)),)
    return tuple(_describe(extension) for extension in extensions)


def _describe(extension: x509.Extension[x509.ExtensionType]) -> ExtensionDescription:
    value = extension.value
    for kind, (name, describe) in _DESCRIBERS.items():
        if isinstance(value, kind):
            lines = tuple(describe(value))
            return ExtensionDescription(name, extension.oid.dotted_string, extension.critical, lines)
    if extension.oid == MODBUS_ROLE_OID and isinstance(value, x509.UnrecognizedExtension):
        try:
            role = f"role: {decode_modbus_role(value.value)}"
        except ParseError as exc:
            role = f"not a valid role ({exc.message}): {value.value.hex()}"
        return ExtensionDescription(
            "Modbus/TCP Security role", MODBUS_ROLE_OID.dotted_string, extension.critical, (role,)
        )
    return ExtensionDescription(
        _unknown_name(extension), extension.oid.dotted_string, extension.critical, (f"DER: {_der_of(value)}",)
    )


def _unknown_name(extension: x509.Extension[x509.ExtensionType]) -> str:
    known = getattr(extension.oid, "_name", None)
    if known and known != "Unknown OID":
        return str(known)
    return "Unknown extension"


def _der_of(value: x509.ExtensionType) -> str:
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value.hex()
    try:
        return value.public_bytes().hex()
    except (NotImplementedError, ValueError):  # pragma: no cover - every supported type encodes
        return "(not encodable)"


def _basic_constraints(value: x509.BasicConstraints) -> Iterable[str]:
    yield "certificate authority: yes" if value.ca else "certificate authority: no (end entity)"
    if value.ca:
        yield "path length: no limit" if value.path_length is None else f"path length: {value.path_length}"


def _key_usage(value: x509.KeyUsage) -> Iterable[str]:
    usages = [
        ("digital signature", value.digital_signature),
        ("content commitment (non-repudiation)", value.content_commitment),
        ("key encipherment", value.key_encipherment),
        ("data encipherment", value.data_encipherment),
        ("key agreement", value.key_agreement),
        ("certificate signing", value.key_cert_sign),
        ("CRL signing", value.crl_sign),
    ]
    yield from (name for name, present in usages if present)
    if value.key_agreement:
        if value.encipher_only:
            yield "encipher only"
        if value.decipher_only:
            yield "decipher only"


_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "TLS server authentication",
    ExtendedKeyUsageOID.CLIENT_AUTH: "TLS client authentication",
    ExtendedKeyUsageOID.CODE_SIGNING: "code signing",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "email protection",
    ExtendedKeyUsageOID.TIME_STAMPING: "time stamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSP signing",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "any purpose",
    ExtendedKeyUsageOID.SMARTCARD_LOGON: "smart card logon",
    ExtendedKeyUsageOID.IPSEC_IKE: "IPsec IKE",
}


def _extended_key_usage(value: x509.ExtendedKeyUsage) -> Iterable[str]:
    for usage in value:
        name = _EKU_NAMES.get(usage)
        yield f"{name} ({usage.dotted_string})" if name else _oid(usage)


def _alternative_names(value: x509.SubjectAlternativeName | x509.IssuerAlternativeName) -> Iterable[str]:
    return (describe_general_name(name) for name in value)


def _subject_key_identifier(value: x509.SubjectKeyIdentifier) -> Iterable[str]:
    yield f"key identifier: {_colon_hex(value.digest)}"


def _authority_key_identifier(value: x509.AuthorityKeyIdentifier) -> Iterable[str]:
    if value.key_identifier is not None:
        yield f"key identifier: {_colon_hex(value.key_identifier)}"
    for name in value.authority_cert_issuer or ():
        yield f"issuer: {describe_general_name(name)}"
    if value.authority_cert_serial_number is not None:
        yield f"issuer serial: {value.authority_cert_serial_number:x}"


def _distribution_points(value: x509.CRLDistributionPoints | x509.FreshestCRL) -> Iterable[str]:
    for point in value:
        for name in point.full_name or ():
            yield describe_general_name(name)
        if point.relative_name is not None:
            yield f"relative name: {point.relative_name.rfc4514_string()}"
        if point.reasons:
            yield "only for reasons: " + ", ".join(sorted(r.value for r in point.reasons))
        for name in point.crl_issuer or ():
            yield f"CRL issuer: {describe_general_name(name)}"


_ACCESS_METHODS = {
    AuthorityInformationAccessOID.OCSP: "OCSP responder",
    AuthorityInformationAccessOID.CA_ISSUERS: "CA issuers",
}


def _information_access(
    value: x509.AuthorityInformationAccess | x509.SubjectInformationAccess,
) -> Iterable[str]:
    for description in value:
        method = _ACCESS_METHODS.get(description.access_method, _oid(description.access_method))
        yield f"{method}: {describe_general_name(description.access_location)}"


def _certificate_policies(value: x509.CertificatePolicies) -> Iterable[str]:
    for policy in value:
        yield f"policy {_oid(policy.policy_identifier)}"
        for qualifier in policy.policy_qualifiers or ():
            if isinstance(qualifier, str):
                yield f"  practice statement (CPS): {qualifier}"
            elif qualifier.explicit_text:
                yield f"  user notice: {qualifier.explicit_text}"
            else:
                yield "  user notice (by reference)"


def _name_constraints(value: x509.NameConstraints) -> Iterable[str]:
    for name in value.permitted_subtrees or ():
        yield f"permitted: {describe_general_name(name)}"
    for name in value.excluded_subtrees or ():
        yield f"excluded: {describe_general_name(name)}"


def _ocsp_no_check(_value: x509.OCSPNoCheck) -> Iterable[str]:
    yield "relying parties need not check this responder certificate's revocation"


def _policy_constraints(value: x509.PolicyConstraints) -> Iterable[str]:
    if value.require_explicit_policy is not None:
        yield f"require explicit policy after {value.require_explicit_policy} certificates"
    if value.inhibit_policy_mapping is not None:
        yield f"inhibit policy mapping after {value.inhibit_policy_mapping} certificates"


def _inhibit_any_policy(value: x509.InhibitAnyPolicy) -> Iterable[str]:
    yield f"anyPolicy allowed for {value.skip_certs} more certificates"


def _tls_feature(value: x509.TLSFeature) -> Iterable[str]:
    return (f"TLS feature: {feature.name}" for feature in value)


_DESCRIBERS: dict[type, tuple[str, Callable[..., Iterable[str]]]] = {
    x509.BasicConstraints: ("Basic constraints", _basic_constraints),
    x509.KeyUsage: ("Key usage", _key_usage),
    x509.ExtendedKeyUsage: ("Extended key usage", _extended_key_usage),
    x509.SubjectAlternativeName: ("Subject alternative names", _alternative_names),
    x509.IssuerAlternativeName: ("Issuer alternative names", _alternative_names),
    x509.SubjectKeyIdentifier: ("Subject key identifier", _subject_key_identifier),
    x509.AuthorityKeyIdentifier: ("Authority key identifier", _authority_key_identifier),
    x509.CRLDistributionPoints: ("CRL distribution points", _distribution_points),
    x509.FreshestCRL: ("Freshest CRL (delta CRLs)", _distribution_points),
    x509.AuthorityInformationAccess: ("Authority information access", _information_access),
    x509.SubjectInformationAccess: ("Subject information access", _information_access),
    x509.CertificatePolicies: ("Certificate policies", _certificate_policies),
    x509.NameConstraints: ("Name constraints", _name_constraints),
    x509.OCSPNoCheck: ("OCSP no check", _ocsp_no_check),
    x509.PolicyConstraints: ("Policy constraints", _policy_constraints),
    x509.InhibitAnyPolicy: ("Inhibit anyPolicy", _inhibit_any_policy),
    x509.TLSFeature: ("TLS feature (OCSP must-staple)", _tls_feature),
}

_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def _oid(oid: x509.ObjectIdentifier) -> str:
    known = getattr(oid, "_name", None)
    if known and known != "Unknown OID":
        return f"{known} ({oid.dotted_string})"
    return oid.dotted_string


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)
