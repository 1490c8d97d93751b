"""OCSP (RFC 6960): decode requests, find which CA they ask about, plan and build responses.

Requests name the issuer by hashes of its name and key (usually SHA-1, which is
an identifier here, not a signature; otward signs responses with SHA-256 or
better). Responses are signed by the CA's delegated responder and echo the
request's nonce (RFC 8954).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from otward.core.keys import public_key_bits
from otward.core.revocation import RevokedEntry
from otward.errors import ParseError

__all__ = [
    "CertStatus",
    "IssuerIndex",
    "OcspQuery",
    "StatusAnswer",
    "build_ocsp_response",
    "build_unsuccessful_response",
    "load_ocsp_request",
]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

_MAX_REQUEST_BYTES = 16 * 1024


class CertStatus(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class OcspQuery:
    """One decoded single request and the request's nonce."""

    hash_name: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int
    nonce: bytes | None

    @property
    def issuer_key(self) -> tuple[str, bytes, bytes]:
        return (self.hash_name, self.issuer_name_hash, self.issuer_key_hash)


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    """What the responder says about one serial."""

    status: CertStatus
    revoked: RevokedEntry | None = None


def load_ocsp_request(der: bytes) -> OcspQuery:
    """Decode a DER OCSP request with exactly one single request."""
    if not der or len(der) > _MAX_REQUEST_BYTES:
        raise ParseError("OCSP request is empty or too large", rule="ocsp-request")
    try:
        request = ocsp.load_der_ocsp_request(der)
        hash_name = request.hash_algorithm.name
        nonce: bytes | None
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            nonce = None
        query = OcspQuery(
            hash_name=hash_name,
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            nonce=nonce,
        )
    except (ValueError, NotImplementedError) as exc:
        raise ParseError("not a DER OCSP request with one single request", rule="ocsp-request") from exc
    except UnsupportedAlgorithm:  # a CertID hash cryptography does not know (not a ValueError)
        raise ParseError("OCSP CertID hash is not supported", rule="ocsp-request") from None
    except x509.DuplicateExtension as exc:  # not a ValueError either
        raise ParseError(
            f"OCSP request has extension {exc.oid.dotted_string} more than once", rule="ocsp-request"
        ) from None
    if hash_name not in _HASHES:
        raise ParseError(f"OCSP CertID hash '{hash_name}' is not supported", rule="ocsp-request")
    if query.serial_number < 0:  # RFC 5280 serials are positive; no answer can carry a negative one
        raise ParseError("OCSP request's serial number is negative", rule="ocsp-request")
    size = _HASHES[hash_name]().digest_size
    if len(query.issuer_name_hash) != size or len(query.issuer_key_hash) != size:
        raise ParseError(f"OCSP CertID hashes are not {hash_name} digests", rule="ocsp-request")
    if nonce is not None and not 1 <= len(nonce) <= 32:
        raise ParseError("OCSP nonce must be 1 to 32 octets (RFC 8954)", rule="ocsp-nonce")
    return query


class IssuerIndex:
    """Maps every CertID issuer hash pair otward can be asked about to the CA's name."""

    def __init__(self, issuers: Iterable[tuple[str, x509.Certificate]]) -> None:
        self._by_hash: dict[tuple[str, bytes, bytes], str] = {}
        for name, certificate in issuers:
            subject_der = certificate.subject.public_bytes()
            key_bits = public_key_bits(certificate.public_key())
            for hash_name in _HASHES:
                self._by_hash[
                    (
                        hash_name,
                        hashlib.new(hash_name, subject_der).digest(),
                        hashlib.new(hash_name, key_bits).digest(),
                    )
                ] = name

    def find(self, query: OcspQuery) -> str | None:
        """The name of the CA the query asks about, or None if otward does not serve it."""
        return self._by_hash.get(query.issuer_key)


def build_ocsp_response(
    query: OcspQuery,
    answer: StatusAnswer,
    *,
    responder_certificate: x509.Certificate,
    this_update: datetime,
    next_update: datetime,
) -> ocsp.OCSPResponseBuilder:
    """An unsigned successful response; the caller signs it with the responder key."""
    revoked = answer.revoked if answer.status is CertStatus.REVOKED else None
    status = {
        CertStatus.GOOD: ocsp.OCSPCertStatus.GOOD,
        CertStatus.REVOKED: ocsp.OCSPCertStatus.REVOKED,
        CertStatus.UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN,
    }[answer.status]
    reason = None
    if revoked is not None and revoked.reason is not x509.ReasonFlags.unspecified:
        reason = revoked.reason
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=query.issuer_name_hash,
            issuer_key_hash=query.issuer_key_hash,
            serial_number=query.serial_number,
            algorithm=_HASHES[query.hash_name](),
            cert_status=status,
            this_update=this_update,
            next_update=next_update,
            revocation_time=revoked.revocation_date if revoked else None,
            revocation_reason=reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder_certificate)
        .certificates([responder_certificate])
    )
    if query.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(query.nonce), critical=False)
    return builder


def build_unsuccessful_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """DER of an error response (malformedRequest, unauthorized, internalError, tryLater)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)
