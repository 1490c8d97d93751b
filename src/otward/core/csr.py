"""Parsing and checking PKCS#10 certificate signing requests (RFC 2986).

A CSR is untrusted input: it is parsed, its self-signature verified, its key
type checked and its signature hash checked before any profile looks at it. It
must be DER throughout: ``cryptography`` parses the structures it knows with a
DER-strict parser, and :mod:`otward.core.der` checks what it keeps opaque (the
subject's attribute values, the request's attributes, unknown extension values).
Its subject must follow RFC 5280's string types and upper bounds
(:func:`otward.core.names.validate_subject_der`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from otward.core.der import Tlv, read_tlv, validate_der
from otward.core.keys import KeyType, classify_public_key
from otward.core.names import SubjectAltNames, parse_san_extension, validate_subject_der
from otward.errors import ParseError, UnsupportedAlgorithmError

__all__ = ["CheckedRequest", "checked_subject", "load_csr", "validate_csr"]

# Hashes accepted in a CSR's self-signature. SHA-1 and MD5 are refused outright.
_ACCEPTED_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)

_MAX_CSR_BYTES = 64 * 1024


@dataclass(frozen=True)
class CheckedRequest:
    """A CSR whose signature, key and hash passed; the only form profiles see."""

    csr: x509.CertificateSigningRequest
    key_type: KeyType
    subject: x509.Name
    sans: SubjectAltNames


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER PKCS#10 request; raise :class:`ParseError` on anything else."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    if not raw:
        raise ParseError("csr is empty", rule="csr-format")
    if len(raw) > _MAX_CSR_BYTES:
        raise ParseError(f"csr is larger than {_MAX_CSR_BYTES} bytes", rule="csr-format")
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(raw)
        return x509.load_der_x509_csr(raw)
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        # InvalidVersion: a version other than v1 (0); cryptography raises it, not a ValueError
        raise ParseError(
            "csr is not a valid PEM or DER PKCS#10 certificate request", rule="csr-format"
        ) from exc


def validate_csr(csr: x509.CertificateSigningRequest) -> CheckedRequest:
    """Verify the self-signature, the key and the signature hash of ``csr``."""
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnsupportedAlgorithmError("csr public key is of an unsupported type", rule="key-type") from exc
    key_type = classify_public_key(public_key)
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise UnsupportedAlgorithmError(
            "csr signature algorithm is not supported", rule="csr-signature-hash"
        ) from exc
    if key_type is not KeyType.ED25519 and not isinstance(algorithm, _ACCEPTED_HASHES):
        name = algorithm.name if algorithm is not None else "none"
        raise UnsupportedAlgorithmError(
            f"csr is signed with {name}; only SHA-256, SHA-384 or SHA-512 are accepted",
            rule="csr-signature-hash",
        )
    if not csr.is_signature_valid:
        raise ParseError("csr signature does not verify", rule="csr-signature")
    subject = checked_subject(csr)
    try:
        extensions = csr.extensions
    except x509.DuplicateExtension as exc:  # not a ValueError
        raise ParseError(
            f"csr has extension {exc.oid.dotted_string} more than once", rule="csr-format"
        ) from exc
    except ValueError as exc:
        raise ParseError("csr extensions are malformed", rule="csr-format") from exc
    for extension in extensions:
        if isinstance(extension.value, x509.UnrecognizedExtension):
            _validate_der(extension.value.value, f"the value of extension {extension.oid.dotted_string}")
    try:
        san_ext = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = SubjectAltNames()
    else:
        sans = parse_san_extension(san_ext)
    return CheckedRequest(csr=csr, key_type=key_type, subject=subject, sans=sans)


def _validate_der(data: bytes, what: str) -> Tlv:
    try:
        return validate_der(data)
    except ParseError as exc:
        raise ParseError(f"{what} is not DER ({exc.message})", rule="csr-der") from None


def checked_subject(csr: x509.CertificateSigningRequest) -> x509.Name:
    """The CSR's subject once the request is DER and the subject follows RFC 5280 (string types,
    upper bounds, no control characters, one attribute per RDN).

    ``cryptography`` has parsed the request's structure with a DER-strict parser; what it keeps
    as opaque bytes (attribute values, and below the values of unknown extensions) is checked here.
    """
    parts = read_tlv(csr.public_bytes(Encoding.DER))[0].children()[0].children()
    for attribute in parts[3:]:
        _validate_der(attribute.encoding, "the csr attributes")
    validate_subject_der(parts[1].encoding)
    try:
        return csr.subject
    except ValueError as exc:
        raise ParseError("csr subject is malformed", rule="csr-format") from exc
