"""OPC UA assessment: the endpoints a server announced (GetEndpoints) in, findings out.

Flags SecurityPolicy None and the deprecated Basic128Rsa15 and Basic256 (both sign with SHA-1, which
otward treats as high everywhere), SecurityMode Sign where SignAndEncrypt is possible, anonymous user
tokens, passwords that would travel unencrypted, and a server certificate that fails the checks of
:mod:`otward.core.assess.certificates` — with OPC 10000-6's ApplicationUri in the subjectAltName.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from pyasn1.codec.der import decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ

from otward.core.assess.certificates import CertificateExpectations, check_certificate_chain
from otward.core.assess.findings import Finding, Severity

__all__ = [
    "MAX_CERTIFICATE_BYTES",
    "OpcUaEndpoint",
    "OpcUaObservation",
    "UserToken",
    "assess_opcua",
    "parse_certificate_blob",
    "policy_name",
]

POLICY_PREFIX: Final = "http://opcfoundation.org/UA/SecurityPolicy#"
DEPRECATED_POLICIES: Final = frozenset({"Basic128Rsa15", "Basic256"})
MAX_CERTIFICATE_BYTES: Final = 64 * 1024
_MAX_CERTIFICATES: Final = 10
_ANONYMOUS: Final = "Anonymous"
_USER_NAME: Final = "UserName"
_FIX: Final = (
    "Offer only Basic256Sha256 or Aes256_Sha256_RsaPss (Aes128_Sha256_RsaOaep where needed) endpoints in "
    "SignAndEncrypt mode, with user authentication by certificate or by user name over such an endpoint."
)


@dataclass(frozen=True)
class UserToken:
    """A user identity token policy: its type (Anonymous, UserName, Certificate, IssuedToken) and the
    SecurityPolicy protecting the token ('' means the endpoint's)."""

    token_type: str
    security_policy_uri: str = ""


@dataclass(frozen=True)
class OpcUaEndpoint:
    """One EndpointDescription, as plain values."""

    url: str
    security_policy_uri: str
    security_mode: str  # None | Sign | SignAndEncrypt
    user_tokens: tuple[UserToken, ...]
    certificate: bytes  # DER, possibly a chain of DER certificates one after the other
    application_uri: str


@dataclass(frozen=True)
class OpcUaObservation:
    target: str
    endpoints: tuple[OpcUaEndpoint, ...]
    note: str | None = None


def policy_name(uri: str) -> str:
    """``Basic256Sha256`` for its URI (the URI itself when it is not an OPC Foundation policy)."""
    return uri[len(POLICY_PREFIX) :] if uri.startswith(POLICY_PREFIX) else (uri or "None")


def parse_certificate_blob(blob: bytes) -> tuple[x509.Certificate, ...]:
    """The certificates in an OPC UA ServerCertificate (one DER certificate or several one after the
    other, OPC 10000-6 §6.2.3); ValueError when it is empty, too large or not DER certificates."""
    if len(blob) > MAX_CERTIFICATE_BYTES:
        raise ValueError(f"server certificate field of {len(blob)} bytes exceeds {MAX_CERTIFICATE_BYTES}")
    certificates: list[x509.Certificate] = []
    rest = blob
    while rest:
        if len(certificates) == _MAX_CERTIFICATES:
            raise ValueError(f"more than {_MAX_CERTIFICATES} certificates in the server certificate field")
        try:
            item, rest = decoder.decode(rest, asn1Spec=univ.Any())
            certificates.append(x509.load_der_x509_certificate(bytes(item)))
        except (PyAsn1Error, ValueError) as exc:
            raise ValueError(f"server certificate is not DER: {exc}") from None
    if not certificates:
        raise ValueError("empty server certificate")
    return tuple(certificates)


def assess_opcua(
    observation: OpcUaObservation,
    trust: tuple[x509.Certificate, ...],
    server_name: str | None,
    *,
    now: datetime,
) -> list[Finding]:
    """The findings of one OPC UA server."""
    findings: list[Finding] = []
    note = f"{observation.note}: " if observation.note else ""

    def add(
        check: str, severity: Severity, title: str, evidence: str, fix: str, reqs: tuple[str, ...]
    ) -> None:
        findings.append(Finding(check, severity, observation.target, title, note + evidence, fix, reqs))

    endpoints = observation.endpoints
    if not endpoints:
        add(
            "opcua.endpoints.none",
            Severity.MEDIUM,
            "Server announced no endpoints",
            "GetEndpoints returned an empty list.",
            "Check the server's endpoint configuration.",
            ("CR 4.1",),
        )
        return findings

    def listing(test: Callable[[OpcUaEndpoint], bool]) -> str:
        return "; ".join(_describe(e) for e in endpoints if test(e))

    add(
        "opcua.endpoints",
        Severity.INFO,
        f"{len(endpoints)} endpoint(s) announced",
        listing(lambda e: True),
        "None; for the record.",
        ("CR 4.3",),
    )
    insecure = listing(lambda e: policy_name(e.security_policy_uri) == "None" or e.security_mode == "None")
    if insecure:
        add(
            "opcua.security.none",
            Severity.HIGH,
            "Endpoint without security (SecurityPolicy None)",
            insecure + " — messages are neither signed nor encrypted.",
            _FIX,
            ("CR 3.1", "CR 4.1", "CR 4.3"),
        )
    deprecated = listing(lambda e: policy_name(e.security_policy_uri) in DEPRECATED_POLICIES)
    if deprecated:
        add(
            "opcua.policy.deprecated",
            Severity.HIGH,
            "Deprecated SecurityPolicy (Basic128Rsa15 / Basic256)",
            deprecated + " — deprecated by the OPC Foundation: SHA-1 signatures, RSA PKCS#1 v1.5.",
            _FIX,
            ("CR 1.9", "CR 4.3"),
        )
    sign_only = listing(lambda e: e.security_mode == "Sign" and policy_name(e.security_policy_uri) != "None")
    if sign_only:
        add(
            "opcua.mode.sign_only",
            Severity.MEDIUM,
            "Endpoint signs but does not encrypt",
            sign_only + " — SignAndEncrypt is possible with the same policy; values travel readable.",
            _FIX,
            ("CR 4.1",),
        )
    anonymous = listing(lambda e: any(t.token_type == _ANONYMOUS for t in e.user_tokens))
    if anonymous:
        add(
            "opcua.token.anonymous",
            Severity.MEDIUM,
            "Anonymous users accepted",
            anonymous + " — any client that completes the secure channel gets a session.",
            "Remove the Anonymous user token policy; authenticate users by certificate or user name.",
            ("CR 1.1", "CR 1.2"),
        )
    clear = listing(
        lambda e: any(
            t.token_type == _USER_NAME
            and e.security_mode != "SignAndEncrypt"
            and policy_name(t.security_policy_uri or e.security_policy_uri) == "None"
            for t in e.user_tokens
        )
    )
    if clear:
        add(
            "opcua.token.plaintext_password",
            Severity.HIGH,
            "Passwords would travel unencrypted",
            clear
            + " — a UserName token protected by SecurityPolicy None on a channel that does not encrypt.",
            "Offer UserName tokens only on SignAndEncrypt endpoints or with a token SecurityPolicy.",
            ("CR 1.5", "CR 4.1"),
        )
    seen: set[bytes] = set()
    for endpoint in endpoints:
        if not endpoint.certificate or endpoint.certificate in seen:
            continue
        seen.add(endpoint.certificate)
        try:
            chain = parse_certificate_blob(endpoint.certificate)
        except ValueError as exc:
            add(
                "opcua.cert.unreadable",
                Severity.HIGH,
                "Server certificate cannot be read",
                f"{endpoint.url}: {exc}.",
                "Configure a DER application instance certificate issued by the plant's CA.",
                ("CR 1.2", "CR 1.8"),
            )
            continue
        expectations = CertificateExpectations(
            trust=trust,
            server_name=server_name,
            application_uri=endpoint.application_uri or None,
            require_application_uri=True,
        )
        for finding in check_certificate_chain(
            chain, expectations, now=now, target=observation.target, prefix="opcua"
        ):
            add(
                finding.check,
                finding.severity,
                finding.title,
                finding.evidence,
                finding.recommendation,
                finding.requirements,
            )
    return findings


def _describe(endpoint: OpcUaEndpoint) -> str:
    tokens = ",".join(t.token_type for t in endpoint.user_tokens) or "-"
    return (
        f"{endpoint.url} {policy_name(endpoint.security_policy_uri)}/{endpoint.security_mode} tokens {tokens}"
    )
