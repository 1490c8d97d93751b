"""Expiry warnings: ``cert.expiring`` once per certificate as it crosses 30 and 7 days before
expiry, ``ca.expiring`` once per CA certificate at 90, 30 and 7 days."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography import x509

from otward.core.audit import AuditFilter, EventType, Outcome
from otward.core.ca_lifecycle import expiry_marks_crossed
from otward.core.ports import AuditStore, AuthorityStore, CertificateStore
from otward.core.records import CertificateFilter
from otward.services.audit import SYSTEM_ACTOR, AuditLog

__all__ = ["MARKS", "ExpiryWatch"]

MARKS = (30, 7)  # days before notAfter
_PAGE = 500


class ExpiryWatch:
    def __init__(
        self,
        certificates: CertificateStore,
        trail: AuditStore,
        audit: AuditLog,
        *,
        clock: Callable[[], datetime],
        authorities: AuthorityStore | None = None,
    ) -> None:
        self._authorities = authorities
        self._certificates = certificates
        self._trail = trail
        self._audit = audit
        self._clock = clock

    def record_crossings(self) -> int:
        """Warn once for each unrevoked certificate that has crossed a mark; returns the events written."""
        now = self._clock()
        written = 0
        offset = 0
        query = CertificateFilter(
            revoked=False, expires_after=now, expires_before=now + timedelta(days=max(MARKS))
        )
        while True:
            records, _ = self._certificates.list_certificates(query, limit=_PAGE, offset=offset)
            for record in records:
                left = record.not_valid_after - now
                due = [m for m in MARKS if left <= timedelta(days=m)]
                if not due:
                    continue
                seen, _ = self._trail.list_audit(
                    AuditFilter(type=EventType.CERT_EXPIRING.value, subject=record.serial), limit=10, offset=0
                )
                done = {r.event.details.get("mark") for r in seen}
                for mark in due:
                    if f"{mark}d" in done:
                        continue
                    details = {
                        "mark": f"{mark}d",
                        "ca": record.ca,
                        "profile": record.profile,
                        "not_valid_after": record.not_valid_after.isoformat(),
                        "dn": record.subject,
                    }
                    self._audit.record(
                        self._audit.event(
                            SYSTEM_ACTOR,
                            EventType.CERT_EXPIRING,
                            record.serial,
                            outcome=Outcome.SUCCESS,
                            reason=f"expires in less than {mark} days",
                            details=details,
                        )
                    )
                    written += 1
            if len(records) < _PAGE:
                return written
            offset += _PAGE

    def record_ca_crossings(self) -> list[tuple[str, int, datetime]]:
        """Warn once (``ca.expiring``) for each CA certificate in use that has crossed 90, 30 or 7
        days before its notAfter; returns (CA, mark, notAfter) of the events written. A CA rolled
        over or revoked is left to expire without warnings, and a renewed one starts afresh (the
        marks are kept per certificate serial)."""
        if self._authorities is None:
            return []
        now = self._clock()
        written: list[tuple[str, int, datetime]] = []
        for authority in self._authorities.list_authorities():
            if authority.superseded_by is not None:
                continue
            certificate = x509.load_der_x509_certificate(authority.certificate_der)
            stored = self._certificates.get_certificate(certificate.serial_number)
            if stored is not None and stored.revoked_at is not None:
                continue
            due = expiry_marks_crossed(certificate.not_valid_after_utc, now)
            if not due:
                continue
            serial = f"{certificate.serial_number:x}"
            seen, _ = self._trail.list_audit(
                AuditFilter(type=EventType.CA_EXPIRING.value, subject=authority.name), limit=50, offset=0
            )
            done = {r.event.details.get("mark") for r in seen if r.event.details.get("serial") == serial}
            for mark in due:
                if f"{mark}d" in done:
                    continue
                details = {
                    "mark": f"{mark}d",
                    "serial": serial,
                    "not_valid_after": certificate.not_valid_after_utc.isoformat(),
                }
                self._audit.record(
                    self._audit.event(
                        SYSTEM_ACTOR,
                        EventType.CA_EXPIRING,
                        authority.name,
                        reason=f"CA certificate expires in less than {mark} days: renew or roll it over",
                        details=details,
                    )
                )
                written.append((authority.name, mark, certificate.not_valid_after_utc))
        return written
