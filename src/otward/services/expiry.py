"""``cert.expiring`` warnings: one audit event per certificate as it crosses 30 and 7 days before expiry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from otward.core.audit import AuditFilter, EventType, Outcome
from otward.core.ports import AuditStore, CertificateStore
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
    ) -> None:
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
