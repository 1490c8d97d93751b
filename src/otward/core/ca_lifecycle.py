"""A CA's life after creation, as pure decisions: the request for a certificate signed outside,
the checks on what comes back, renewal, rollover links and expiry marks.

An issuing CA under an offline or company root starts as a key and a PKCS#10 request that asks for
basicConstraints cA, keyCertSign + cRLSign and (optionally) a pathLen and name constraints. What
the root's operator signs may differ from what was asked, so the certificate is checked on its own
before the CA may issue: same key, a CA, the key usages a CA needs, a pathLen that leaves room for
what was requested, valid now, no SHA-1, and a path to a self-signed root of the chain given
(:func:`otward.core.chain.find_path`, each signature verified by ``cryptography``).

A rollover gives a CA a new key under a new name (``issuing`` → ``issuing-g2``): two generations
never share a subject, so a relying party that looks CRLs and issuers up by name (OpenSSL,
Mosquitto) cannot mix them up. When a root rolls over, the two link certificates of RFC 4210
§4.4 let each generation's holders reach the other: OldWithNew (the new key under the new name,
signed by the old key) and NewWithOld (the old key under the old name, signed by the new key).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from otward.core.chain import find_path
from otward.core.extensions import key_identifier
from otward.core.identifiers import CA_NAME
from otward.core.issuance import ca_key_usage
from otward.core.keys import classify_public_key
from otward.errors import InvalidRequestError, PolicyViolationError

__all__ = [
    "CA_EXPIRY_MARKS",
    "RequestedCa",
    "build_ca_csr",
    "build_link_certificate",
    "expiry_marks_crossed",
    "is_self_signed",
    "read_requested_ca",
    "successor_name",
    "successor_subject",
    "validate_ca_certificate",
]

CA_EXPIRY_MARKS = (90, 30, 7)  # days before a CA certificate's notAfter: one ca.expiring event each

_GENERATION = re.compile(r"\A(?P<base>[a-z0-9][a-z0-9-]*?)-g(?P<n>[0-9]+)\Z")
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)


@dataclass(frozen=True)
class RequestedCa:
    """What a CA certificate request asks for beyond its subject and key."""

    path_length: int | None
    permitted_dns: tuple[str, ...] = ()
    permitted_ip: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


def build_ca_csr(subject: x509.Name, requested: RequestedCa) -> x509.CertificateSigningRequestBuilder:
    """An unsigned PKCS#10 request for a CA certificate: basicConstraints cA (with ``path_length``),
    keyCertSign + cRLSign and the permitted name subtrees, as requested extensions (RFC 2985
    extensionRequest) that a root operator can copy (``openssl ca`` with ``copy_extensions``)."""
    if requested.path_length is not None and requested.path_length < 0:
        raise PolicyViolationError("path length must not be negative", rule="path-length")
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=requested.path_length), critical=True)
        .add_extension(ca_key_usage(), critical=True)
    )
    subtrees: list[x509.GeneralName] = [x509.DNSName(n.lower().lstrip(".")) for n in requested.permitted_dns]
    subtrees += [x509.IPAddress(net) for net in requested.permitted_ip]
    if subtrees:
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=subtrees, excluded_subtrees=None), critical=True
        )
    return builder


def read_requested_ca(csr: x509.CertificateSigningRequest) -> RequestedCa:
    """The pathLen and permitted DNS/IP subtrees a CSR asks for (pathLen 0 when it asks nothing)."""
    try:
        extensions = csr.extensions
    except ValueError as exc:
        raise InvalidRequestError("csr extensions are malformed", rule="csr-format") from exc
    path_length: int | None = 0
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        pass
    else:
        if not constraints.ca:
            raise PolicyViolationError(
                "csr asks for basicConstraints cA=FALSE; a CA certificate needs cA=TRUE", rule="ca-csr"
            )
        path_length = constraints.path_length
    try:
        names = extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return RequestedCa(path_length)
    if names.excluded_subtrees:
        raise PolicyViolationError(
            "csr asks for excluded name subtrees, which otward does not sign", rule="ca-csr"
        )
    dns: list[str] = []
    ips: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for name in names.permitted_subtrees or ():
        if isinstance(name, x509.DNSName):
            dns.append(name.value)
        elif isinstance(name, x509.IPAddress) and isinstance(
            name.value, ipaddress.IPv4Network | ipaddress.IPv6Network
        ):
            ips.append(name.value)
        else:
            raise PolicyViolationError(
                f"csr asks for a permitted subtree of type {type(name).__name__}; only DNS names and "
                "IP networks are signed",
                rule="ca-csr",
            )
    return RequestedCa(path_length, tuple(dns), tuple(ips))


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def is_self_signed(certificate: x509.Certificate) -> bool:
    """True when ``certificate`` names itself as issuer and its signature verifies with its own key."""
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def validate_ca_certificate(
    certificate: x509.Certificate,
    *,
    name: str,
    public_key: CertificatePublicKeyTypes,
    requested_path_length: int | None,
    chain: Sequence[x509.Certificate],
    now: datetime,
) -> list[x509.Certificate]:
    """Check a CA certificate signed outside for CA ``name`` and return its path, root last.

    ``chain`` holds the issuers above it (any order) and must include the self-signed root the
    path ends at. Each refusal says which property is wrong."""
    if _spki(certificate.public_key()) != _spki(public_key):
        raise PolicyViolationError(
            f"the certificate is not for the key of CA '{name}' (its public key differs)",
            rule="ca-key-mismatch",
        )
    classify_public_key(certificate.public_key())
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if isinstance(algorithm, _WEAK_HASHES):
        raise PolicyViolationError(
            f"the certificate is signed with {algorithm.name}; SHA-1 and MD5 are refused",
            rule="ca-signature-hash",
        )
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PolicyViolationError(
            "the certificate is not a CA certificate (basicConstraints cA=TRUE is missing)", rule="ca-not-ca"
        )
    try:
        usage: x509.KeyUsage | None = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.key_cert_sign or not usage.crl_sign:
        raise PolicyViolationError(
            "the certificate's key usage must include keyCertSign and cRLSign", rule="ca-key-usage"
        )
    have = constraints.path_length
    if requested_path_length is not None and have is not None and have < requested_path_length:
        raise PolicyViolationError(
            f"the certificate allows pathLen {have} but CA '{name}' was requested with "
            f"pathLen {requested_path_length}",
            rule="path-length",
        )
    try:
        certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        raise PolicyViolationError(
            "the certificate has no subjectKeyIdentifier (RFC 5280 4.2.1.2: a CA certificate must have one)",
            rule="ca-ski",
        ) from None
    if not list(certificate.subject):
        raise PolicyViolationError("the certificate's subject is empty", rule="ca-subject")
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if not start <= now < end:
        raise PolicyViolationError(
            f"the certificate is not valid now ({now:%Y-%m-%d %H:%M} UTC): it is valid from "
            f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC",
            rule="ca-validity",
        )
    anchors = [c for c in chain if is_self_signed(c)]
    if not anchors:
        raise PolicyViolationError(
            "the chain holds no self-signed root certificate to verify against", rule="ca-chain"
        )
    if is_self_signed(certificate):
        raise PolicyViolationError(
            "the certificate is self-signed; it must be signed by the root", rule="ca-chain"
        )
    path = find_path(certificate, [c for c in chain if c not in anchors], anchors, now)
    if path is None:
        raise PolicyViolationError(
            "the certificate does not chain to the root given (signature, issuer name, validity, "
            "pathLen or key usage of a certificate on the way does not fit)",
            rule="ca-chain",
        )
    return path


def successor_name(name: str) -> str:
    """The name of the next generation of CA ``name``: ``issuing`` → ``issuing-g2`` → ``issuing-g3``."""
    found = _GENERATION.match(name)
    base, generation = (found.group("base"), int(found.group("n")) + 1) if found else (name, 2)
    suffix = f"-g{generation}"
    candidate = base[: 63 - len(suffix)].rstrip("-") + suffix
    if not CA_NAME.is_valid(candidate):
        raise PolicyViolationError(f"no successor name can be made from CA name '{name}'", rule="ca-name")
    return candidate


def successor_subject(subject: x509.Name, generation_name: str) -> x509.Name:
    """The subject of the next generation: the same attributes, its CN ending in `` G<n>``."""
    found = _GENERATION.match(generation_name)
    mark = f" G{found.group('n')}" if found else ""
    attributes: list[x509.NameAttribute[str | bytes]] = []
    for attribute in subject:
        if attribute.oid == x509.oid.NameOID.COMMON_NAME and mark:
            value = re.sub(r" G[0-9]+\Z", "", str(attribute.value))
            attributes.append(x509.NameAttribute(attribute.oid, value[: 64 - len(mark)] + mark))
        else:
            attributes.append(attribute)
    if not any(a.oid == x509.oid.NameOID.COMMON_NAME for a in subject):
        attributes.append(x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, generation_name))
    return x509.Name(attributes)


def build_link_certificate(
    *,
    subject_certificate: x509.Certificate,
    issuer_certificate: x509.Certificate,
    serial_number: int,
    not_valid_before: datetime,
    not_valid_after: datetime,
) -> x509.CertificateBuilder:
    """An RFC 4210 §4.4 root key update certificate: the subject and key of
    ``subject_certificate`` under ``issuer_certificate``'s name (the caller signs with that
    issuer's key). OldWithNew is (new, old); NewWithOld is (old, new)."""
    if not_valid_after <= not_valid_before:
        raise PolicyViolationError("a link certificate needs notAfter after notBefore", rule="ca-link")
    issuer_ski = issuer_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    path_length = subject_certificate.extensions.get_extension_for_class(
        x509.BasicConstraints
    ).value.path_length
    public_key = subject_certificate.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject_certificate.subject)
        .issuer_name(issuer_certificate.subject)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(not_valid_before)
        .not_valid_after(not_valid_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier(public_key)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
        )
    )


def expiry_marks_crossed(not_valid_after: datetime, now: datetime) -> tuple[int, ...]:
    """The marks of :data:`CA_EXPIRY_MARKS` that ``now`` has crossed (none once expired)."""
    left = not_valid_after - now
    if left <= timedelta(0):
        return ()
    return tuple(m for m in CA_EXPIRY_MARKS if left <= timedelta(days=m))
