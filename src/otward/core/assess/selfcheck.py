"""Checks of otward's own installation, as findings: facts in, findings out (no file or clock access).

``otward.services.selfcheck`` gathers the facts (file modes, certificates, CRLs, the audit chain's state,
the Mosquitto listener otward wrote); ``otward assess self`` prints the findings and ``otward doctor``
says the same in plain words, next to its operational checks (database, migrations, clock, disk).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from otward.core.assess.findings import Finding, Severity

__all__ = [
    "CA_WARN_DAYS",
    "CertificateRole",
    "FileFact",
    "FileKind",
    "check_audit_tail",
    "check_certificate",
    "check_clock_skew",
    "check_crl",
    "check_file",
    "check_listener_config",
]

# A CA certificate warns at 90 days, a responder or service certificate at 30; 7 days is urgent.
CA_WARN_DAYS: Final = 90
LEAF_WARN_DAYS: Final = 30
URGENT_DAYS: Final = 7
MAX_CLOCK_SKEW: Final = timedelta(seconds=5)


class FileKind(StrEnum):
    KEY = "key"  # a private key (encrypted or not)
    SECRET = "secret"  # a passphrase, token or password file  # noqa: S105 - a kind, not a secret
    DATA_DIR = "data directory"


@dataclass(frozen=True)
class FileFact:
    path: str
    kind: FileKind
    mode: int  # st_mode & 0o777


class CertificateRole(StrEnum):
    CA = "CA"
    RESPONDER = "OCSP responder"
    SERVICE = "service TLS"
    BROKER = "Mosquitto broker"


_CHECK_OF_ROLE = {
    CertificateRole.CA: "selfcheck.ca",
    CertificateRole.RESPONDER: "selfcheck.responder",
    CertificateRole.SERVICE: "selfcheck.tls",
    CertificateRole.BROKER: "selfcheck.mqtt",
}


def check_file(fact: FileFact) -> Finding | None:
    """Keys and secrets readable by anyone but their owner, or a data directory others can enter."""
    if fact.kind is FileKind.DATA_DIR:
        if fact.mode & 0o007 == 0:
            return None
        return Finding(
            check="selfcheck.permissions.data-dir",
            severity=Severity.HIGH,
            target=fact.path,
            title="the data directory is open to other users",
            evidence=f"mode {fact.mode:04o}: others may list or enter it",
            recommendation=f"chmod 700 {fact.path}",
            requirements=("CR 4.1", "CR 1.5"),
        )
    if fact.mode & 0o077 == 0:
        return None
    return Finding(
        check=f"selfcheck.permissions.{fact.kind.value}",
        severity=Severity.HIGH,
        target=fact.path,
        title=f"a {fact.kind.value} file is readable by group or others",
        evidence=f"mode {fact.mode:04o}",
        recommendation=f"chmod 600 {fact.path}",
        requirements=("CR 1.5", "CR 4.1"),
    )


def _key_problem(certificate: x509.Certificate) -> str | None:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey) and key.key_size < 2048:
        return f"a {key.key_size}-bit {'RSA' if isinstance(key, rsa.RSAPublicKey) else 'DSA'} key"
    algorithm = certificate.signature_hash_algorithm
    if algorithm is not None and algorithm.name in ("sha1", "md5"):
        return f"a {algorithm.name.upper()} signature"
    return None


def check_certificate(
    name: str, role: CertificateRole, certificate: x509.Certificate, now: datetime
) -> list[Finding]:
    """Expired, expiring (90/30/7 days), not yet valid, or weak (RSA < 2048, SHA-1/MD5)."""
    findings: list[Finding] = []
    base = _CHECK_OF_ROLE[role]
    target = f"{role.value} {name}"
    end = certificate.not_valid_after_utc
    left = end - now
    warn_days = CA_WARN_DAYS if role is CertificateRole.CA else LEAF_WARN_DAYS
    renew = {
        CertificateRole.CA: f"renew or roll over the CA (otward ca renew {name} / ca rollover {name})",
        CertificateRole.RESPONDER: "restart otward serve (it renews responder certificates) or renew the CA",
        CertificateRole.SERVICE: "restart otward serve: it renews its certificate at two thirds of its life",
        CertificateRole.BROKER: "run otward mqtt-config --refresh-crl (it renews the broker certificate)",
    }[role]
    if left <= timedelta(0):
        findings.append(
            Finding(
                check=f"{base}.expired",
                severity=Severity.HIGH,
                target=target,
                title=f"the {role.value} certificate has expired",
                evidence=f"notAfter {end:%Y-%m-%d %H:%M} UTC",
                recommendation=renew,
                requirements=("CR 1.8",),
            )
        )
    elif left < timedelta(days=warn_days):
        urgent = left < timedelta(days=URGENT_DAYS)
        findings.append(
            Finding(
                check=f"{base}.expiring",
                severity=Severity.HIGH
                if urgent
                else Severity.MEDIUM
                if left < timedelta(days=LEAF_WARN_DAYS)
                else Severity.LOW,
                target=target,
                title=f"the {role.value} certificate expires in {left.days} days",
                evidence=f"notAfter {end:%Y-%m-%d %H:%M} UTC",
                recommendation=renew,
                requirements=("CR 1.8",),
            )
        )
    if certificate.not_valid_before_utc > now:
        findings.append(
            Finding(
                check=f"{base}.not-yet-valid",
                severity=Severity.HIGH,
                target=target,
                title=f"the {role.value} certificate is not valid yet",
                evidence=f"notBefore {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                recommendation="check this host's clock",
                requirements=("CR 1.8", "CR 2.11"),
            )
        )
    problem = _key_problem(certificate)
    if problem is not None:
        findings.append(
            Finding(
                check=f"{base}.weak",
                severity=Severity.HIGH,
                target=target,
                title=f"the {role.value} certificate uses {problem}",
                evidence=certificate.subject.rfc4514_string(),
                recommendation="replace it with an ECDSA P-256 or RSA >= 2048 key and SHA-256",
                requirements=("CR 4.3", "CR 1.9"),
            )
        )
    return findings


def check_crl(ca: str, next_update: datetime | None, now: datetime) -> Finding | None:
    """A CA without a CRL, or whose CRL is past its nextUpdate (relying parties then refuse or
    trust stale revocation data)."""
    if next_update is not None and next_update > now:
        return None
    evidence = "no CRL stored" if next_update is None else f"nextUpdate {next_update:%Y-%m-%d %H:%M} UTC"
    return Finding(
        check="selfcheck.crl.stale",
        severity=Severity.HIGH,
        target=f"CRL of {ca}",
        title="the CRL is missing" if next_update is None else "the CRL is past its nextUpdate",
        evidence=evidence,
        recommendation=f"run otward crl generate --ca {ca}; otward serve refreshes CRLs while it runs",
        requirements=("CR 1.8",),
    )


def check_audit_tail(
    *, ok: bool, problem: str | None, unsigned: int, unsigned_for: timedelta | None, max_unsigned: timedelta
) -> Finding | None:
    """Records left unsigned longer than allowed, or a chain that does not verify (high); a young
    unsigned tail is information only (the service signs every few seconds)."""
    if unsigned and unsigned_for is not None and unsigned_for > max_unsigned:
        return Finding(
            check="selfcheck.audit.unsigned",
            severity=Severity.HIGH,
            target="audit trail",
            title=f"{unsigned} audit records have been unsigned for {unsigned_for.total_seconds():.0f} s",
            evidence=f"limit {max_unsigned.total_seconds():.0f} s; {problem or ''}".rstrip("; "),
            recommendation="start otward serve (it signs the head) or run otward audit sign",
            requirements=("CR 3.9", "CR 2.8"),
        )
    if not ok:
        return Finding(
            check="selfcheck.audit.broken",
            severity=Severity.HIGH,
            target="audit trail",
            title="the audit trail does not verify",
            evidence=problem or "",
            recommendation="run otward audit verify: it names the first edited, missing or reordered record",
            requirements=("CR 3.9", "CR 2.8"),
        )
    if unsigned and unsigned_for is not None:
        return Finding(
            check="selfcheck.audit.unsigned-tail",
            severity=Severity.INFO,
            target="audit trail",
            title=f"{unsigned} recent audit records are not signed yet",
            evidence=f"unsigned for {unsigned_for.total_seconds():.0f} s "
            f"(limit {max_unsigned.total_seconds():.0f} s)",
            recommendation="none while otward serve runs (it signs the head every few seconds)",
            requirements=("CR 3.9",),
        )
    return None


def check_clock_skew(skew: timedelta, source: str) -> Finding | None:
    """This host's clock against the database server's (PostgreSQL ``now()``)."""
    if abs(skew) <= MAX_CLOCK_SKEW:
        return None
    return Finding(
        check="selfcheck.clock.skew",
        severity=Severity.MEDIUM,
        target="clock",
        title=f"this host's clock differs from {source} by {abs(skew).total_seconds():.1f} s",
        evidence=f"host minus {source}: {skew.total_seconds():+.1f} s",
        recommendation="synchronise both with NTP (systemd-timesyncd, chrony)",
        requirements=("CR 2.11",),
    )


def check_listener_config(path: str, lines: Sequence[str]) -> list[Finding]:
    """A Mosquitto listener otward wrote: still mutual TLS 1.2+, no anonymous clients."""
    options: dict[str, str] = {}
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            key, _, value = text.partition(" ")
            options[key] = value.strip()
    problems = []
    if options.get("allow_anonymous", "false") != "false":
        problems.append("allow_anonymous is not false")
    if options.get("require_certificate") != "true":
        problems.append("require_certificate is not true")
    if options.get("tls_version") not in ("tlsv1.2", "tlsv1.3"):
        problems.append(f"tls_version is {options.get('tls_version', 'unset')}")
    if not options.get("crlfile"):
        problems.append("no crlfile")
    if not problems:
        return []
    return [
        Finding(
            check="selfcheck.mqtt.listener",
            severity=Severity.HIGH,
            target=path,
            title="the Mosquitto listener otward configured was weakened",
            evidence="; ".join(problems),
            recommendation="rewrite it with otward mqtt-config --out DIR (do not edit the file)",
            requirements=("CR 4.3", "CR 1.2"),
        )
    ]
