"""Counts for the metrics endpoint, computed by the database (right whatever process did the work)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, select

from otward.adapters.db.database import Database
from otward.adapters.db.schema import audit_events, certificates
from otward.core.audit import AGGREGATED_SUBJECT

__all__ = ["SqlStatisticsStore"]


class SqlStatisticsStore:
    """Implements :class:`otward.core.ports.StatisticsStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def certificate_counts(self) -> list[tuple[str, str, int, int]]:
        """(ca, profile, issued, revoked) for every CA and profile."""
        revoked = func.count(certificates.c.revoked_at)
        stmt = select(certificates.c.ca, certificates.c.profile, func.count(), revoked).group_by(
            certificates.c.ca, certificates.c.profile
        )
        with self._database.reading() as conn:
            return [(ca, profile, int(n), int(r)) for ca, profile, n, r in conn.execute(stmt)]

    def expiring_counts(self, now: datetime, until: datetime) -> dict[str, int]:
        """Unrevoked certificates per CA that are valid now and expire before ``until``."""
        stmt = (
            select(certificates.c.ca, func.count())
            .where(
                certificates.c.revoked_at.is_(None),
                certificates.c.not_valid_after >= now,
                certificates.c.not_valid_after < until,
            )
            .group_by(certificates.c.ca)
        )
        with self._database.reading() as conn:
            return {ca: int(n) for ca, n in conn.execute(stmt)}

    def failure_count(self, event_type: str) -> int:
        """How many failures of ``event_type`` the trail stands for: rows written one by one, plus the
        count each aggregated row (subject ``(repeated failures)``, ``details.failures``) carries."""
        rows = (audit_events.c.type == event_type, audit_events.c.outcome == "failure")
        aggregated = (*rows, audit_events.c.subject == AGGREGATED_SUBJECT)
        with self._database.reading() as conn:
            total = int(conn.execute(select(func.count()).where(*rows)).scalar_one())
            details = conn.execute(select(audit_events.c.details).where(*aggregated)).scalars().all()
        counted = 0
        for text in details:
            try:
                counted += int(json.loads(text).get("failures", 1))
            except (ValueError, TypeError, AttributeError):
                counted += 1  # an unreadable row still stands for at least one failure
        return total - len(details) + counted

    def event_counts(self) -> list[tuple[str, str, int]]:
        """(type, outcome, count) over the whole audit trail."""
        stmt = select(audit_events.c.type, audit_events.c.outcome, func.count()).group_by(
            audit_events.c.type, audit_events.c.outcome
        )
        with self._database.reading() as conn:
            return [(t, o, int(n)) for t, o, n in conn.execute(stmt)]
