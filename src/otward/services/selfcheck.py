"""One pass over an installation for ``otward doctor`` and ``otward assess self``.

The security checks become findings (``otward.core.assess.selfcheck`` decides; this module gathers the
facts: file modes, certificates, CRLs, the audit chain, the Mosquitto listener otward wrote). The
operational checks that are not findings of a security assessment — can the database be reached, is
its schema current, does this host's clock agree with the database server's, is there disk left — are
returned beside them for ``doctor``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from otward.adapters.db import check_schema, create_database_engine
from otward.config import DB_PASSWORD_FILE, PASSPHRASE_FILE, Settings
from otward.core.assess.findings import Finding, Severity
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
from otward.errors import OtwardError, StorageError
from otward.services.bootstrap import ADMIN_TOKEN_FILE, TlsFiles
from otward.services.channels import MOSQUITTO_FILES
from otward.services.pki import Pki, utc_now

__all__ = ["MIN_FREE_BYTES", "OperationalCheck", "SelfCheckReport", "assess_open_pki", "run_selfcheck"]

MIN_FREE_BYTES: Final = 1 << 30  # 1 GiB: SQLite, the journal and CRLs grow; a full disk stops issuance
MIN_FREE_SHARE: Final = 0.05


@dataclass(frozen=True)
class OperationalCheck:
    """One operational check of ``doctor``: ``ok`` false means it needs action."""

    name: str
    ok: bool
    message: str


@dataclass(frozen=True)
class SelfCheckReport:
    data_dir: Path
    findings: tuple[Finding, ...]
    operational: tuple[OperationalCheck, ...]

    @property
    def needs_action(self) -> bool:
        """Anything an operator must act on: a failed operational check or a high or medium finding."""
        return any(not c.ok for c in self.operational) or any(
            f.severity in (Severity.HIGH, Severity.MEDIUM) and f.accepted is None for f in self.findings
        )


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


def _file_facts(settings: Settings) -> list[FileFact]:
    data_dir = settings.data_dir
    facts: list[FileFact] = []
    mode = _mode(data_dir)
    if mode is not None:
        facts.append(FileFact(str(data_dir), FileKind.DATA_DIR, mode))
    keys = sorted((data_dir / "keys").glob("*")) if (data_dir / "keys").is_dir() else []
    candidates = [(p, FileKind.KEY) for p in keys if p.is_file()]
    candidates.append((TlsFiles.in_dir(data_dir).private_key, FileKind.KEY))
    candidates += [
        (data_dir / n, FileKind.SECRET) for n in (PASSPHRASE_FILE, ADMIN_TOKEN_FILE, DB_PASSWORD_FILE)
    ]
    if settings.keys.pkcs11_pin_file is not None:
        candidates.append((settings.keys.pkcs11_pin_file, FileKind.SECRET))
    if settings.mqtt.config_dir:
        candidates.append((Path(settings.mqtt.config_dir) / MOSQUITTO_FILES["keyfile"], FileKind.KEY))
    for path, kind in candidates:
        mode = _mode(path)
        if mode is not None:
            facts.append(FileFact(str(path), kind, mode))
    return facts


def _service_findings(settings: Settings, now: datetime) -> list[Finding]:
    tls = TlsFiles.in_dir(settings.data_dir)
    try:
        certificate = x509.load_pem_x509_certificates(tls.certificate_chain.read_bytes())[0]
    except (OSError, ValueError) as exc:
        return [
            Finding(
                check="selfcheck.tls.unreadable",
                severity=Severity.HIGH,
                target=str(tls.certificate_chain),
                title="the service's TLS certificate cannot be read",
                evidence=str(exc),
                recommendation="restore tls/server.pem from a backup or run otward serve to reissue it",
                requirements=("CR 1.8",),
            )
        ]
    findings = check_certificate("otward serve", CertificateRole.SERVICE, certificate, now)
    key = certificate.public_key()
    size = getattr(key, "key_size", None)
    findings.append(
        Finding(
            check="selfcheck.tls.settings",
            severity=Severity.INFO,
            target="otward serve",
            title="the service speaks TLS 1.2 or 1.3 with ECDHE and AEAD suites only",
            evidence=(
                f"fixed in otward.adapters.tls (minimum TLSv1.2, no compression, renegotiation or tickets); "
                f"certificate {type(key).__name__.removeprefix('_')}{f' {size} bits' if size else ''}, "
                f"valid until {certificate.not_valid_after_utc:%Y-%m-%d}, names "
                f"{', '.join(settings.server.names)}"
            ),
            recommendation="none",
            requirements=("CR 4.3", "CR 3.1"),
        )
    )
    return findings


def _mqtt_findings(settings: Settings, now: datetime) -> list[Finding]:
    if not settings.mqtt.config_dir:
        return []
    directory = Path(settings.mqtt.config_dir)
    findings: list[Finding] = []
    config = directory / MOSQUITTO_FILES["config"]
    try:
        findings += check_listener_config(str(config), config.read_text(encoding="utf-8").splitlines())
        broker = x509.load_pem_x509_certificate((directory / MOSQUITTO_FILES["certfile"]).read_bytes())
        findings += check_certificate(str(directory), CertificateRole.BROKER, broker, now)
    except (OSError, ValueError) as exc:
        findings.append(
            Finding(
                check="selfcheck.mqtt.missing",
                severity=Severity.MEDIUM,
                target=str(directory),
                title="the Mosquitto listener configured in [mqtt] cannot be read",
                evidence=str(exc),
                recommendation="run otward mqtt-config --out DIR again, or remove [mqtt] config_dir",
                requirements=("CR 4.3",),
            )
        )
    return findings


def _pki_findings(pki: Pki, now: datetime) -> list[Finding]:
    findings: list[Finding] = []
    for authority in pki.authorities.list():
        certificate = x509.load_der_x509_certificate(authority.certificate_der)
        if certificate.not_valid_after_utc <= now:
            continue  # an expired CA issues nothing more, and its CRL cannot outlive it: history
        findings += check_certificate(authority.name, CertificateRole.CA, certificate, now)
        responder = x509.load_der_x509_certificate(authority.ocsp_certificate_der)
        findings += check_certificate(authority.name, CertificateRole.RESPONDER, responder, now)
        crl = pki.stores.crls.get_crl(authority.name)
        found = check_crl(authority.name, crl.next_update if crl is not None else None, now)
        if found is not None:
            findings.append(found)
    try:
        report = pki.audit.verify()
        check = report.check
        audit = check_audit_tail(
            ok=check.ok,
            problem=check.problem,
            unsigned=check.unsigned,
            unsigned_for=check.unsigned_for,
            max_unsigned=report.max_unsigned,
        )
    except OtwardError as exc:
        audit = check_audit_tail(
            ok=False,
            problem=exc.message,
            unsigned=0,
            unsigned_for=None,
            max_unsigned=timedelta(seconds=pki.settings.audit.max_unsigned_seconds),
        )
    if audit is not None:
        findings.append(audit)
    return findings


def _journal(path: Path, data_dir: Path) -> OperationalCheck:
    """The revocation journal must be writable: CRL publication stops when it cannot be appended."""
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        return OperationalCheck(
            "revocation journal",
            False,
            f"{target} is not writable: CRLs cannot be published until it is (docs/backup.md)",
        )
    size = path.stat().st_size if path.exists() else 0
    advice = (
        "; it shares the data directory's disk: set revocation_journal to another one (docs/backup.md)"
        if path.resolve().is_relative_to(data_dir.resolve())
        else ""
    )
    return OperationalCheck("revocation journal", True, f"{path} writable ({size} bytes){advice}")


def _disk(data_dir: Path) -> OperationalCheck:
    try:
        usage = shutil.disk_usage(data_dir)
    except OSError as exc:
        return OperationalCheck("disk", False, f"cannot read the free space of {data_dir}: {exc.strerror}")
    free_gib = usage.free / (1 << 30)
    if usage.free < MIN_FREE_BYTES or usage.free < usage.total * MIN_FREE_SHARE:
        return OperationalCheck(
            "disk",
            False,
            f"only {free_gib:.2f} GiB ({usage.free / usage.total:.0%}) free where {data_dir} is: a full disk"
            " stops issuance, CRL publication and the audit trail; free space or move the data directory",
        )
    return OperationalCheck("disk", True, f"{free_gib:.1f} GiB free ({usage.free / usage.total:.0%})")


def run_selfcheck(
    settings: Settings, *, clock: Callable[[], datetime] = utc_now, operational: bool = True
) -> SelfCheckReport:
    """Every check of the installation ``settings`` describes; nothing is changed."""
    now = clock()
    findings = [f for f in map(check_file, _file_facts(settings)) if f is not None]
    findings += _service_findings(settings, now)
    findings += _mqtt_findings(settings, now)
    checks: list[OperationalCheck] = []
    engine = create_database_engine(settings.database_url)
    try:
        check_schema(engine)
    except StorageError as exc:
        name = "database" if exc.rule == "database-unreachable" else "migrations"
        checks.append(OperationalCheck(name, False, exc.message))
        if name == "migrations":
            checks.insert(0, OperationalCheck("database", True, "reachable"))
    else:
        checks.append(OperationalCheck("database", True, "reachable"))
        checks.append(OperationalCheck("migrations", True, "the schema is at this otward's newest revision"))
        checks.append(_clock(engine, findings))
    finally:
        engine.dispose()
    if all(c.ok for c in checks):
        with contextlib.closing(Pki.open(settings, clock=clock)) as pki:
            findings += _pki_findings(pki, now)
    checks.append(_journal(settings.revocation_journal_path, settings.data_dir))
    checks.append(_disk(settings.data_dir))
    return SelfCheckReport(settings.data_dir, tuple(findings), tuple(checks) if operational else ())


def assess_open_pki(pki: Pki) -> tuple[Finding, ...]:
    """The findings of ``otward assess self`` for the installation ``pki`` already serves, read
    through its open connection (the console's dashboard): the same checks as :func:`run_selfcheck`
    without the operational ones, which a running service answers by running. It verifies the
    whole audit trail, so callers that show it often should cache it."""
    settings = pki.settings
    now = pki.clock()
    findings = [f for f in map(check_file, _file_facts(settings)) if f is not None]
    findings += _service_findings(settings, now)
    findings += _mqtt_findings(settings, now)
    findings += _pki_findings(pki, now)
    return tuple(findings)


def _clock(engine: Engine, findings: list[Finding]) -> OperationalCheck:
    """This host's real clock (never a test's) against PostgreSQL's ``now()``, read mid-query."""
    if engine.dialect.name != "postgresql":
        return OperationalCheck("clock", True, "not applicable (SQLite has no clock of its own)")
    try:
        with engine.connect() as conn:
            before = datetime.now(UTC)
            server = conn.execute(text("SELECT statement_timestamp()")).scalar_one()
            after = datetime.now(UTC)
    except SQLAlchemyError:
        return OperationalCheck("clock", False, "cannot read the database server's clock")
    skew = before + (after - before) / 2 - server.astimezone(UTC)
    finding = check_clock_skew(skew, "the database server")
    if finding is None:
        return OperationalCheck(
            "clock", True, f"agrees with the database server ({skew.total_seconds():+.1f} s)"
        )
    findings.append(finding)
    return OperationalCheck("clock", False, finding.title + "; synchronise both with NTP")
