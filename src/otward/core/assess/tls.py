"""TLS assessment: what a probe observed at one endpoint in, findings out.

The probe (:mod:`otward.adapters.assess.tls_probe`) only records facts — versions and suites the server
accepted, the chain it presented, whether it asked for and verified a client certificate; this module
decides what they mean. Severities follow issue 15: SSL/TLS below 1.2, NULL/export/RC4/(3)DES or
anonymous suites and any certificate failure are high; a server that does not ask for client
certificates is medium.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from cryptography import x509

from otward.core.assess.certificates import CertificateExpectations, check_certificate_chain
from otward.core.assess.findings import Finding, Severity

__all__ = [
    "LEGACY_VERSIONS",
    "CipherSuite",
    "ClientAuth",
    "ProtocolVersion",
    "SelfSignedClient",
    "TlsObservation",
    "assess_tls",
    "suite_weaknesses",
    "unreachable_finding",
]


class ProtocolVersion(StrEnum):
    """Protocol versions, spelled as OpenSSL and Python's ``ssl`` report them."""

    SSL3 = "SSLv3"
    TLS1_0 = "TLSv1"
    TLS1_1 = "TLSv1.1"
    TLS1_2 = "TLSv1.2"
    TLS1_3 = "TLSv1.3"


LEGACY_VERSIONS: Final = (ProtocolVersion.SSL3, ProtocolVersion.TLS1_0, ProtocolVersion.TLS1_1)


class ClientAuth(StrEnum):
    """What the server did about client certificates in a handshake without one."""

    NOT_REQUESTED = "not-requested"  # no CertificateRequest
    OPTIONAL = "optional"  # CertificateRequest, but the session went on without a certificate
    REQUIRED = "required"  # CertificateRequest, and the session was refused without one
    UNKNOWN = "unknown"


class SelfSignedClient(StrEnum):
    """What the server did with a client certificate nobody issued (made up by the probe)."""

    REFUSED = "refused"
    ACCEPTED = "accepted"
    UNTESTED = "untested"


@dataclass(frozen=True)
class CipherSuite:
    """An accepted suite with the properties OpenSSL reports for it (``SSLContext.get_ciphers``)."""

    name: str
    version: ProtocolVersion  # the protocol version it was accepted with
    aead: bool
    kea: str  # kx-ecdhe, kx-dhe, kx-rsa, ...
    auth: str  # auth-rsa, auth-ecdsa, auth-null, ...
    digest: str | None  # the MAC digest of non-AEAD suites
    symmetric: str | None  # None for NULL encryption


@dataclass(frozen=True)
class TlsObservation:
    """What one scan of ``target`` saw.

    ``protocols`` maps each version to True (accepted), False (refused) or None (the local TLS library
    cannot offer it: not testable). ``untestable`` names weaknesses the local library cannot offer at
    all (RC4, 3DES, export), so their absence here is not evidence. ``incomplete`` says why the scan
    stopped early (the per-target deadline), if it did.
    """

    target: str
    protocols: dict[ProtocolVersion, bool | None]
    suites: tuple[CipherSuite, ...]
    chain: tuple[x509.Certificate, ...]
    client_auth: ClientAuth
    self_signed_client: SelfSignedClient
    negotiated: str = ""
    untestable: tuple[str, ...] = ()
    incomplete: str | None = None
    note: str | None = None  # e.g. the asset name from an inventory
    failure: str | None = None  # why the first handshake failed, when no version was accepted


# (check id, severity, title, requirements, recommendation) per suite weakness.
_SUITE_CHECKS: Final[dict[str, tuple[Severity, str, tuple[str, ...]]]] = {
    "null": (Severity.HIGH, "NULL cipher suites accepted (no encryption)", ("CR 4.1", "CR 4.3")),
    "export": (Severity.HIGH, "Export-grade cipher suites accepted", ("CR 4.1", "CR 4.3")),
    "rc4": (Severity.HIGH, "RC4 cipher suites accepted", ("CR 4.1", "CR 4.3")),
    "des": (Severity.HIGH, "DES/3DES cipher suites accepted (Sweet32)", ("CR 4.1", "CR 4.3")),
    "anonymous": (
        Severity.HIGH,
        "Anonymous cipher suites accepted (no server authentication)",
        ("CR 1.2", "CR 3.1", "CR 4.3"),
    ),
    "cbc_sha1": (Severity.MEDIUM, "CBC cipher suites with SHA-1 MAC accepted", ("CR 3.1", "CR 4.3")),
    "no_forward_secrecy": (
        Severity.MEDIUM,
        "Cipher suites without forward secrecy accepted (static RSA key exchange)",
        ("CR 4.1", "CR 4.3"),
    ),
    "non_aead": (Severity.LOW, "Non-AEAD (CBC) cipher suites accepted", ("CR 3.1", "CR 4.3")),
}
_Add = Callable[[str, Severity, str, str, str, tuple[str, ...]], None]
_SUITE_FIX = (
    "Allow only ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2 (OpenSSL: "
    "'ECDHE+AESGCM:ECDHE+CHACHA20') and enable TLS 1.3, as otward's own listeners do."
)
_PROTOCOL_FIX = (
    "Disable SSL 3.0, TLS 1.0 and TLS 1.1 (minimum TLS 1.2, prefer TLS 1.3); if the device cannot, "
    "put it behind otward gateway or a TLS 1.2+ terminating proxy."
)


def suite_weaknesses(suite: CipherSuite) -> tuple[str, ...]:
    """The weaknesses of one suite, as keys of the check ids ``tls.cipher.<key>``."""
    name = suite.name.upper()
    found = []
    if suite.symmetric is None or "NULL" in name:
        found.append("null")
    if "EXP" in name.split("-"):
        found.append("export")
    if "RC4" in name:
        found.append("rc4")
    if "DES" in name.replace("DES-CBC3", "DES"):
        found.append("des")
    if suite.auth == "auth-null" or name.startswith(("ADH-", "AECDH-")):
        found.append("anonymous")
    if suite.version is not ProtocolVersion.TLS1_3:
        if suite.kea in {"kx-rsa", "kx-psk", "kx-rsa-psk"}:
            found.append("no_forward_secrecy")
        if not suite.aead:
            found.append("non_aead")
            if (suite.digest or "").lower() in {"sha1", "md5"}:
                found.append("cbc_sha1")
    return tuple(found)


def unreachable_finding(kind: str, target: str, reason: str, requirements: tuple[str, ...]) -> Finding:
    """A target that did not answer: a finding of its own (the checks could not run), not a crash."""
    return Finding(
        check=f"{kind}.unreachable",
        severity=Severity.MEDIUM,
        target=target,
        title="Target did not answer; not assessed",
        evidence=reason,
        recommendation="Check the address and that the scanner may reach it; assess it again. An "
        "unassessed endpoint is an unknown risk.",
        requirements=requirements,
    )


def assess_tls(
    observation: TlsObservation, expectations: CertificateExpectations, *, now: datetime
) -> list[Finding]:
    """The findings of one TLS endpoint."""
    target = observation.target
    findings: list[Finding] = []

    def add(
        check: str, severity: Severity, title: str, evidence: str, fix: str, reqs: tuple[str, ...]
    ) -> None:
        if observation.note:
            evidence = f"{observation.note}: {evidence}"
        findings.append(Finding(check, severity, target, title, evidence, fix, reqs))

    accepted = [v for v in ProtocolVersion if observation.protocols.get(v)]
    legacy = [v for v in LEGACY_VERSIONS if observation.protocols.get(v)]
    if legacy:
        add(
            "tls.protocol.legacy",
            Severity.HIGH,
            "Legacy protocol versions accepted",
            f"the server completed handshakes with {', '.join(legacy)} (accepted: {', '.join(accepted)}).",
            _PROTOCOL_FIX,
            ("CR 3.1", "CR 4.1", "CR 4.3"),
        )
    if accepted and ProtocolVersion.TLS1_3 not in accepted:
        add(
            "tls.protocol.no_tls13",
            Severity.LOW,
            "TLS 1.3 not offered",
            f"accepted: {', '.join(accepted)}.",
            "Enable TLS 1.3 where the device's TLS library supports it.",
            ("CR 4.3",),
        )
    if not accepted and observation.failure:
        add(
            "tls.handshake.failed",
            Severity.MEDIUM,
            "No TLS handshake completed",
            f"the port accepts TCP connections but no TLS handshake succeeded ({observation.failure}); "
            "it may not speak TLS at all.",
            "Check that this port is meant to serve TLS; a plaintext service needs its own assessment "
            "(otward assess modbus) or a TLS front (otward gateway).",
            ("CR 3.1", "CR 4.1"),
        )
    _suite_findings(observation, add)
    untestable = [str(v) for v, state in observation.protocols.items() if state is None]
    untestable += list(observation.untestable)
    if untestable:
        add(
            "tls.scan.not_testable",
            Severity.INFO,
            "Some weaknesses could not be tested from this host",
            "the local TLS library cannot offer " + ", ".join(untestable) + "; a server accepting only those "
            "would go unnoticed (test them with a client built with weak ciphers enabled).",
            "None for the endpoint; run the scan from a host whose OpenSSL offers them if this matters.",
            ("CR 4.3",),
        )
    _client_auth_findings(observation, add)
    if observation.chain:
        findings.extend(
            _noted(
                check_certificate_chain(
                    observation.chain, expectations, now=now, target=target, prefix="tls"
                ),
                observation.note,
            )
        )
    elif accepted:
        findings.extend(check_certificate_chain((), expectations, now=now, target=target, prefix="tls"))
    if observation.incomplete:
        add(
            "tls.scan.incomplete",
            Severity.MEDIUM,
            "Scan did not finish",
            observation.incomplete,
            "Assess the target again with a longer --timeout.",
            ("CR 4.3",),
        )
    if accepted:
        suites = ", ".join(f"{s.name} ({s.version})" for s in observation.suites) or "(TLS 1.3 only)"
        add(
            "tls.summary",
            Severity.INFO,
            "TLS configuration seen",
            f"versions {', '.join(accepted)}; default handshake {observation.negotiated or '-'}; "
            f"TLS 1.2 and older suites: {suites}; client certificates: {observation.client_auth}, "
            f"a self-signed one {observation.self_signed_client}.",
            "None; for the record.",
            ("CR 4.3",),
        )
    return findings


def _noted(findings: Sequence[Finding], note: str | None) -> list[Finding]:
    if not note:
        return list(findings)
    return [
        Finding(
            f.check, f.severity, f.target, f.title, f"{note}: {f.evidence}", f.recommendation, f.requirements
        )
        for f in findings
    ]


def _suite_findings(observation: TlsObservation, add: _Add) -> None:
    by_check: dict[str, list[str]] = {}
    for suite in observation.suites:
        for weakness in suite_weaknesses(suite):
            by_check.setdefault(weakness, []).append(f"{suite.name} ({suite.version})")
    for weakness, (severity, title, requirements) in _SUITE_CHECKS.items():
        if weakness in by_check:
            add(
                f"tls.cipher.{weakness}",
                severity,
                title,
                "accepted: " + ", ".join(by_check[weakness]) + ".",
                _SUITE_FIX,
                requirements,
            )


def _client_auth_findings(observation: TlsObservation, add: _Add) -> None:
    mtls_fix = (
        "Require client certificates from the plant's CA (mutual TLS) and verify them against that CA "
        "only; otward gateway does this for Modbus/TCP."
    )
    if observation.self_signed_client is SelfSignedClient.ACCEPTED:
        add(
            "tls.client_auth.unverified",
            Severity.HIGH,
            "Server accepts a client certificate nobody issued",
            "the handshake with a freshly made self-signed client certificate succeeded and the session "
            "stayed open: the server asks for certificates but does not verify them.",
            mtls_fix,
            ("CR 1.2", "CR 1.9"),
        )
    if observation.client_auth is ClientAuth.NOT_REQUESTED:
        add(
            "tls.client_auth.absent",
            Severity.MEDIUM,
            "Server does not ask for client certificates",
            "no CertificateRequest in the handshake: any client that reaches the port can connect.",
            mtls_fix,
            ("CR 1.2",),
        )
    elif observation.client_auth is ClientAuth.OPTIONAL:
        add(
            "tls.client_auth.optional",
            Severity.LOW,
            "Client certificate requested but not required",
            "the server sent a CertificateRequest, yet kept the session open without a certificate.",
            mtls_fix,
            ("CR 1.2",),
        )
