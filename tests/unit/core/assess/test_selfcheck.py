"""The installation checks as findings: facts in, findings out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from otward.core.assess.findings import Severity
from otward.core.assess.selfcheck import (
    CertificateRole,
    FileFact,
    FileKind,
    check_audit_tail,
    check_certificate,
    check_clock_skew,
    check_crl,
    check_file,
    check_listener_config,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _certificate(*, days_left: float, key=None, start: datetime | None = None) -> x509.Certificate:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start or NOW - timedelta(days=10))
        .not_valid_after(NOW + timedelta(days=days_left))
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("kind", "mode", "check"),
    [
        (FileKind.KEY, 0o600, None),
        (FileKind.KEY, 0o400, None),
        (FileKind.KEY, 0o644, "selfcheck.permissions.key"),
        (FileKind.SECRET, 0o640, "selfcheck.permissions.secret"),
        (FileKind.DATA_DIR, 0o750, None),
        (FileKind.DATA_DIR, 0o755, "selfcheck.permissions.data-dir"),
    ],
    ids=["key-600", "key-400", "key-644", "secret-640", "dir-750", "dir-755"],
)
def test_file_modes(kind, mode, check):
    finding = check_file(FileFact("/d/f", kind, mode))
    assert (finding.check if finding else None) == check
    if finding:
        assert finding.severity is Severity.HIGH
        assert f"{mode:04o}" in finding.evidence


@pytest.mark.parametrize(
    ("role", "days", "check", "severity"),
    [
        (CertificateRole.CA, 400, None, None),
        (CertificateRole.CA, 60, "selfcheck.ca.expiring", Severity.LOW),
        (CertificateRole.CA, 20, "selfcheck.ca.expiring", Severity.MEDIUM),
        (CertificateRole.CA, 3, "selfcheck.ca.expiring", Severity.HIGH),
        (CertificateRole.CA, -1, "selfcheck.ca.expired", Severity.HIGH),
        (CertificateRole.RESPONDER, 60, None, None),
        (CertificateRole.RESPONDER, 20, "selfcheck.responder.expiring", Severity.MEDIUM),
        (CertificateRole.SERVICE, 5, "selfcheck.tls.expiring", Severity.HIGH),
    ],
    ids=["ca-ok", "ca-90", "ca-30", "ca-7", "ca-expired", "responder-ok", "responder-30", "tls-7"],
)
def test_certificate_expiry(role, days, check, severity):
    findings = check_certificate("issuing", role, _certificate(days_left=days), NOW)
    assert [(f.check, f.severity) for f in findings] == ([(check, severity)] if check else [])


def test_weak_and_not_yet_valid_certificates():
    weak = _certificate(days_left=400, key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    assert [f.check for f in check_certificate("x", CertificateRole.SERVICE, weak, NOW)] == [
        "selfcheck.tls.weak"
    ]
    future = _certificate(days_left=400, start=NOW + timedelta(days=1))
    assert [f.check for f in check_certificate("x", CertificateRole.CA, future, NOW)] == [
        "selfcheck.ca.not-yet-valid"
    ]


def test_crl_past_next_update_or_missing():
    assert check_crl("issuing", NOW + timedelta(hours=1), NOW) is None
    stale = check_crl("issuing", NOW - timedelta(seconds=1), NOW)
    assert stale is not None
    assert stale.check == "selfcheck.crl.stale"
    assert stale.severity is Severity.HIGH
    missing = check_crl("issuing", None, NOW)
    assert missing is not None
    assert missing.evidence == "no CRL stored"


def test_audit_tail():
    limit = timedelta(minutes=5)
    assert check_audit_tail(ok=True, problem=None, unsigned=0, unsigned_for=None, max_unsigned=limit) is None
    young = check_audit_tail(
        ok=True, problem=None, unsigned=3, unsigned_for=timedelta(seconds=20), max_unsigned=limit
    )
    assert young is not None
    assert (young.check, young.severity) == ("selfcheck.audit.unsigned-tail", Severity.INFO)
    old = check_audit_tail(
        ok=False,
        problem="unsigned for too long",
        unsigned=3,
        unsigned_for=timedelta(minutes=6),
        max_unsigned=limit,
    )
    assert old is not None
    assert (old.check, old.severity) == ("selfcheck.audit.unsigned", Severity.HIGH)
    broken = check_audit_tail(
        ok=False, problem="record 4 edited", unsigned=0, unsigned_for=None, max_unsigned=limit
    )
    assert broken is not None
    assert (broken.check, broken.evidence) == ("selfcheck.audit.broken", "record 4 edited")


def test_clock_skew():
    assert check_clock_skew(timedelta(seconds=4), "db") is None
    finding = check_clock_skew(timedelta(seconds=-30), "db")
    assert finding is not None
    assert finding.check == "selfcheck.clock.skew"
    assert "-30.0 s" in finding.evidence


GOOD_LISTENER = [
    "allow_anonymous false",
    "listener 8883 127.0.0.1",
    "crlfile /m/crl.pem",
    "require_certificate true",
    "tls_version tlsv1.2",
]


def test_mosquitto_listener():
    assert check_listener_config("m.conf", GOOD_LISTENER) == []
    weakened = [line.replace("tlsv1.2", "tlsv1").replace("false", "true") for line in GOOD_LISTENER]
    [finding] = check_listener_config("m.conf", weakened)
    assert finding.check == "selfcheck.mqtt.listener"
    assert "allow_anonymous is not false" in finding.evidence
    assert "tls_version is tlsv1" in finding.evidence
