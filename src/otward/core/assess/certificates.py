"""Certificate checks shared by the TLS, OPC UA and self assessments: a presented chain, the trust
anchors, the name the client connected to and ``now`` in; findings out.

The trust decision uses ``cryptography.x509.verification`` (RFC 5280 path building, CA extension
policy) with an end-entity policy that permits any extension, so that a missing EKU or subjectAltName
is reported by its own check rather than hidden inside "untrusted". The verification time is moved
inside the chain's validity when the chain is expired or not yet valid, for the same reason: an expired
certificate from a trusted CA is reported as expired, not as untrusted as well.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from otward.core.assess.findings import Finding, Severity

__all__ = [
    "EXPIRY_WARNING",
    "CertificateExpectations",
    "check_certificate_chain",
    "describe_certificate",
    "is_self_signed",
    "name_matches",
]

#: A certificate ending within this window is reported (medium): renewal should already be under way.
EXPIRY_WARNING = timedelta(days=30)
_MIN_RSA_BITS = 2048
_MIN_EC_BITS = 256
_MAX_DEPTH = 8
_WEAK_SIGNATURES = {
    SignatureAlgorithmOID.RSA_WITH_MD5: "MD5",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "SHA-1",
    SignatureAlgorithmOID._RSA_WITH_SHA1: "SHA-1",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "SHA-1",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "SHA-1",
}

_VALIDITY_FIX = (
    "Issue a new certificate from the plant's CA (otward cert issue / EST re-enrollment) and install it; "
    "keep the device's clock synchronised."
)


@dataclass(frozen=True)
class CertificateExpectations:
    """What a client of this endpoint expects of its certificate.

    ``server_name`` is the DNS name or IP address the client connects to (None skips the name check);
    ``trust`` the anchors it trusts; ``application_uri`` the OPC UA ApplicationUri the certificate's
    subjectAltName must carry (OPC 10000-6 §6.2.2) when ``require_application_uri``;
    ``extended_key_usage`` the purpose the leaf must allow (None skips the check, e.g. for a CA or an
    OCSP responder certificate examined by ``assess self``).
    """

    trust: tuple[x509.Certificate, ...]
    server_name: str | None = None
    application_uri: str | None = None
    require_application_uri: bool = False
    expiry_warning: timedelta = EXPIRY_WARNING
    extended_key_usage: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.SERVER_AUTH


def describe_certificate(certificate: x509.Certificate) -> str:
    """Subject, serial and validity in one line, for evidence."""
    return (
        f"subject '{certificate.subject.rfc4514_string()}', serial {certificate.serial_number:x}, "
        f"valid {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} .. "
        f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    )


def is_self_signed(certificate: x509.Certificate) -> bool:
    """Issuer equals subject and the signature verifies with the certificate's own key."""
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def name_matches(certificate: x509.Certificate, name: str) -> bool:
    """RFC 6125 matching against the subjectAltName only (no common-name fallback): DNS names
    case-insensitively with a wildcard only as the whole left-most label, IP literals against
    iPAddress entries."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return address in san.get_values_for_type(x509.IPAddress)
    wanted = name.rstrip(".").lower()
    for pattern in san.get_values_for_type(x509.DNSName):
        pattern = pattern.rstrip(".").lower()
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            head, _, rest = wanted.partition(".")
            if head and rest == pattern[2:] and "*" not in rest:
                return True
    return False


def check_certificate_chain(
    chain: Sequence[x509.Certificate],
    expectations: CertificateExpectations,
    *,
    now: datetime,
    target: str,
    prefix: str,
) -> list[Finding]:
    """Findings about the certificate chain an endpoint presented (leaf first).

    Check ids are ``<prefix>.cert.<check>`` (``tls.cert.expired``, ``opcua.cert.self_signed``).
    """
    checks = _Checks(prefix, target)
    if not chain:
        checks.add(
            "missing",
            Severity.HIGH,
            "No certificate presented",
            "The endpoint sent no certificate, so a client cannot authenticate it.",
            "Configure a certificate issued by the plant's CA.",
            ("CR 1.2", "CR 1.8"),
        )
        return checks.findings
    leaf = chain[0]
    anchors = set(expectations.trust)
    presented = [c for c in chain if not (c in anchors and is_self_signed(c))]
    _check_validity(checks, presented, now, expectations.expiry_warning)
    _check_trust(checks, chain, expectations.trust, now)
    if expectations.server_name is not None and not name_matches(leaf, expectations.server_name):
        checks.add(
            "hostname_mismatch",
            Severity.HIGH,
            f"Certificate does not name {expectations.server_name}",
            f"subjectAltName {_san_text(leaf)} does not match '{expectations.server_name}' "
            "(the common name is not used, RFC 6125).",
            "Issue the certificate with the DNS name or IP address clients use in its subjectAltName "
            "(otward cert issue --dns/--ip), or connect by that name (--servername).",
            ("CR 1.2", "CR 1.8"),
        )
    _check_algorithms(checks, presented)
    if expectations.extended_key_usage is not None:
        _check_eku(checks, leaf, expectations.extended_key_usage)
    if expectations.require_application_uri:
        _check_application_uri(checks, leaf, expectations.application_uri)
    return checks.findings


class _Checks:
    def __init__(self, prefix: str, target: str) -> None:
        self.prefix = prefix
        self.target = target
        self.findings: list[Finding] = []

    def add(
        self,
        check: str,
        severity: Severity,
        title: str,
        evidence: str,
        recommendation: str,
        requirements: tuple[str, ...],
    ) -> None:
        self.findings.append(
            Finding(
                check=f"{self.prefix}.cert.{check}",
                severity=severity,
                target=self.target,
                title=title,
                evidence=evidence,
                recommendation=recommendation,
                requirements=requirements,
            )
        )


def _role(index: int) -> str:
    return "leaf" if index == 0 else f"chain certificate {index}"


def _check_validity(
    checks: _Checks, chain: Sequence[x509.Certificate], now: datetime, warn: timedelta
) -> None:
    expired, early, expiring = [], [], []
    for index, certificate in enumerate(chain):
        line = f"{_role(index)}: {describe_certificate(certificate)}"
        if certificate.not_valid_after_utc < now:
            expired.append(line)
        elif certificate.not_valid_before_utc > now:
            early.append(line)
        elif certificate.not_valid_after_utc - now <= warn:
            days = (certificate.not_valid_after_utc - now).days
            expiring.append(f"{line} (ends in {days} day(s))")
    when = f"checked at {now:%Y-%m-%d %H:%M} UTC"
    if expired:
        checks.add(
            "expired",
            Severity.HIGH,
            "Certificate expired",
            "; ".join(expired) + f"; {when}",
            _VALIDITY_FIX,
            ("CR 1.8", "CR 1.9"),
        )
    if early:
        checks.add(
            "not_yet_valid",
            Severity.HIGH,
            "Certificate not yet valid",
            "; ".join(early) + f"; {when} (a wrong clock on the device or the issuer?)",
            _VALIDITY_FIX,
            ("CR 1.8", "CR 1.9"),
        )
    if expiring:
        checks.add(
            "expiring",
            Severity.MEDIUM,
            f"Certificate expires within {warn.days} days",
            "; ".join(expiring),
            "Renew it now (otward agent renews automatically before expiry; EST simplereenroll).",
            ("CR 1.8",),
        )


def _verification_time(chain: Sequence[x509.Certificate], now: datetime) -> datetime:
    """``now`` when every certificate is valid then; else a moment inside all their validity periods
    (validity is reported by its own check), else ``now``."""
    start = max(c.not_valid_before_utc for c in chain)
    end = min(c.not_valid_after_utc for c in chain)
    if start <= now <= end or start > end:
        return now
    return start if now < start else end


def _check_trust(
    checks: _Checks, chain: Sequence[x509.Certificate], trust: Sequence[x509.Certificate], now: datetime
) -> None:
    leaf = chain[0]
    fix = (
        "Issue the endpoint's certificate from the plant's CA and give clients that CA as their only trust "
        "anchor (assess with --trust CA.pem); never trust a device's own self-signed certificate."
    )
    if leaf not in trust and is_self_signed(leaf):
        checks.add(
            "self_signed",
            Severity.HIGH,
            "Self-signed certificate",
            f"leaf: {describe_certificate(leaf)} is self-signed and not among the "
            f"{len(trust)} trust anchor(s).",
            fix,
            ("CR 1.2", "CR 1.8", "CR 1.9"),
        )
        return
    if not trust:
        checks.add(
            "untrusted",
            Severity.HIGH,
            "Certificate chain cannot be verified",
            "No trust anchors were given or found, so the chain of "
            f"{describe_certificate(leaf)} leads to an unknown root.",
            fix,
            ("CR 1.2", "CR 1.8", "CR 1.9"),
        )
        return
    verifier = (
        PolicyBuilder()
        .store(Store(list(trust)))
        .time(_verification_time(chain, now))
        .max_chain_depth(_MAX_DEPTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, list(chain[1:]))
    except VerificationError as exc:
        checks.add(
            "untrusted",
            Severity.HIGH,
            "Certificate chain does not lead to a trusted root",
            f"{describe_certificate(leaf)}: {exc} ({len(trust)} trust anchor(s), {len(chain)} certificate(s) "
            "presented).",
            fix,
            ("CR 1.2", "CR 1.8", "CR 1.9"),
        )


def _check_algorithms(checks: _Checks, chain: Sequence[x509.Certificate]) -> None:
    weak_signatures, weak_keys = [], []
    for index, certificate in enumerate(chain):
        oid = certificate.signature_algorithm_oid
        if oid in _WEAK_SIGNATURES:
            weak_signatures.append(
                f"{_role(index)} '{certificate.subject.rfc4514_string()}': {_WEAK_SIGNATURES[oid]}"
            )
        key = _weak_key(certificate)
        if key:
            weak_keys.append(f"{_role(index)} '{certificate.subject.rfc4514_string()}': {key}")
    if weak_signatures:
        checks.add(
            "weak_signature",
            Severity.HIGH,
            "Certificate signed with SHA-1 or MD5",
            "; ".join(weak_signatures) + " (collisions can be forged: the signature proves nothing).",
            "Re-issue the certificate with SHA-256 or better (otward signs with SHA-256/384 only).",
            ("CR 1.9", "CR 4.3"),
        )
    if weak_keys:
        checks.add(
            "weak_key",
            Severity.HIGH,
            "Certificate key too weak",
            "; ".join(weak_keys),
            "Generate a new key (RSA 2048 or more, or ECDSA P-256/P-384) and re-issue the certificate.",
            ("CR 1.9", "CR 4.3"),
        )


def _weak_key(certificate: x509.Certificate) -> str | None:
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unsupported public key algorithm"
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        return f"RSA {key.key_size} bits (< {_MIN_RSA_BITS})"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size} bits (DSA is deprecated)"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < _MIN_EC_BITS:
        return f"EC {key.curve.name} ({key.curve.key_size} bits < {_MIN_EC_BITS})"
    return None


def _check_eku(checks: _Checks, leaf: x509.Certificate, purpose: x509.ObjectIdentifier) -> None:
    wanted = getattr(purpose, "_name", purpose.dotted_string)
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        checks.add(
            "eku",
            Severity.LOW,
            "Certificate has no extended key usage",
            f"{describe_certificate(leaf)} has no extendedKeyUsage extension: it is valid for any purpose.",
            f"Issue the certificate with extendedKeyUsage {wanted} (otward profiles set it).",
            ("CR 1.8",),
        )
        return
    if purpose not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
        names = ", ".join(getattr(u, "_name", u.dotted_string) for u in usages) or "none"
        checks.add(
            "eku",
            Severity.MEDIUM,
            f"Certificate not for {wanted}",
            f"extendedKeyUsage of {describe_certificate(leaf)} is {names}, without {wanted}: "
            "strict clients refuse it.",
            f"Issue the certificate with extendedKeyUsage {wanted} (otward profile tls-server for servers).",
            ("CR 1.8",),
        )


def _check_application_uri(checks: _Checks, leaf: x509.Certificate, expected: str | None) -> None:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    fix = (
        "Issue the application instance certificate with the server's ApplicationUri as a URI in its "
        "subjectAltName (otward profile opcua-application, --uri)."
    )
    if not uris:
        checks.add(
            "application_uri",
            Severity.MEDIUM,
            "Certificate carries no ApplicationUri",
            f"subjectAltName {_san_text(leaf)} has no URI; OPC 10000-6 §6.2.2 requires the application's "
            "URI there and clients refuse the certificate (BadCertificateUriInvalid).",
            fix,
            ("CR 1.2", "CR 1.8"),
        )
    elif expected is not None and expected not in uris:
        checks.add(
            "application_uri",
            Severity.MEDIUM,
            "Certificate URI differs from the server's ApplicationUri",
            f"subjectAltName URI(s) {', '.join(uris)}; the server announces '{expected}'.",
            fix,
            ("CR 1.2", "CR 1.8"),
        )


def _san_text(certificate: x509.Certificate) -> str:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "(none)"
    return "[" + ", ".join(str(getattr(n, "value", n)) for n in san) + "]"
