"""Counts for the metrics endpoint, computed by the database (right whatever process did the work)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import ColumnElement, Connection, and_, case, func, literal_column, select

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

    def certificate_status_counts(
        self, now: datetime, expiring_before: datetime
    ) -> list[tuple[str, int, int, int, int]]:
        """(ca, valid, expiring, expired, revoked) per CA, one pass over the table: revoked counts
        every revoked certificate; of the others, expired ends before ``now``, expiring before
        ``expiring_before``, valid later. The four never overlap."""
        c = certificates.c
        alive = c.revoked_at.is_(None)

        def counted(*conditions: ColumnElement[bool]) -> ColumnElement[int]:
            return func.sum(case((and_(*conditions), 1), else_=0))

        stmt = (
            select(
                c.ca,
                counted(alive, c.not_valid_after >= expiring_before),
                counted(alive, c.not_valid_after >= now, c.not_valid_after < expiring_before),
                counted(alive, c.not_valid_after < now),
                func.count(c.revoked_at),
            )
            .group_by(c.ca)
            .order_by(c.ca)
        )
        with self._database.reading() as conn:
            return [
                (ca, int(v or 0), int(x or 0), int(e or 0), int(r or 0))
                for ca, v, x, e, r in conn.execute(stmt)
            ]

    def expiring_per_day(self, now: datetime, until: datetime) -> dict[date, int]:
        """Unrevoked certificates valid at ``now`` that expire before ``until``, by UTC day of expiry."""
        c = certificates.c
        with self._database.reading() as conn:
            day = _utc_day(conn, c.not_valid_after)
            stmt = (
                select(day, func.count())
                .where(c.revoked_at.is_(None), c.not_valid_after >= now, c.not_valid_after < until)
                .group_by(day)
            )
            return {date.fromisoformat(str(d)): int(n) for d, n in conn.execute(stmt)}

    def events_per_day(self, types: Sequence[str], since: datetime) -> dict[tuple[date, str], int]:
        """Audit events of ``types`` at or after ``since``, by UTC day and type."""
        e = audit_events.c
        with self._database.reading() as conn:
            day = _utc_day(conn, e.time)
            stmt = (
                select(day, e.type, func.count())
                .where(e.type.in_(list(types)), e.time >= since)
                .group_by(day, e.type)
            )
            return {(date.fromisoformat(str(d)), t): int(n) for d, t, n in conn.execute(stmt)}

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


def _utc_day(conn: Connection, column: ColumnElement[datetime]) -> ColumnElement[str]:
    """``YYYY-MM-DD`` of a UTC time column: SQLite stores naive UTC text, PostgreSQL a timestamptz
    that must be read in UTC whatever the session's time zone."""
    # literals, not bound parameters: PostgreSQL matches a GROUP BY expression to the selected one
    # only when both are the same text, and two parameters are two different texts to it
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone(literal_column("'UTC'"), column), literal_column("'YYYY-MM-DD'"))
    # SQLite keeps the time as ISO text in UTC: its first ten characters are the day, read four
    # times faster than strftime() parses the whole value
    return func.substr(column, 1, 10)
