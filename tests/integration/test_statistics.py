"""The console's grouped counts, on SQLite and PostgreSQL: per CA and status, per day of expiry,
audit events per day (the day taken in UTC whatever the database session's time zone)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from otward.adapters.db.database import Database
from otward.adapters.db.statistics import SqlStatisticsStore
from otward.core.audit import EventType
from otward.services.audit import Actor
from otward.services.pki import Pki
from tests.integration.console.fill import add_certificates

pytestmark = pytest.mark.integration

NOW = datetime(2031, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _ours(
    rows: list[tuple[str, int, int, int, int]], ca: str, baseline: dict[str, tuple[int, ...]]
) -> tuple[int, ...]:
    found = {r[0]: r[1:] for r in rows}[ca]
    return tuple(n - b for n, b in zip(found, baseline.get(ca, (0, 0, 0, 0)), strict=True))


def test_status_counts_never_overlap(pki: Pki) -> None:
    until = NOW + 30 * DAY
    baseline = {r[0]: r[1:] for r in pki.stores.statistics.certificate_status_counts(NOW, until)}
    add_certificates(
        pki,
        [
            ("issuing", NOW + 31 * DAY, None),  # valid
            ("issuing", NOW + 30 * DAY, None),  # valid: the window ends before it
            ("issuing", NOW + 29 * DAY, None),  # expiring
            ("issuing", NOW, None),  # expiring: still valid at NOW
            ("issuing", NOW - timedelta(seconds=1), None),  # expired
            ("issuing", NOW - 400 * DAY, NOW - 500 * DAY),  # revoked, long expired
            ("root", NOW + 5 * DAY, NOW - DAY),  # revoked
        ],
    )
    rows = pki.stores.statistics.certificate_status_counts(NOW, until)
    assert _ours(rows, "issuing", baseline) == (2, 2, 1, 1)
    assert _ours(rows, "root", baseline) == (0, 0, 0, 1)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)


def test_expiring_per_day_in_utc(pki: Pki) -> None:
    late = datetime(2031, 3, 11, 23, 30, tzinfo=UTC)  # a different day east of UTC
    add_certificates(
        pki,
        [
            ("issuing", late, None),
            ("issuing", late + timedelta(minutes=20), None),  # 23:50, same UTC day
            ("issuing", late + timedelta(hours=1), None),  # 00:30 the next day
            ("issuing", late, NOW),  # revoked: not counted
            ("issuing", NOW - DAY, None),  # expired: not counted
            ("issuing", NOW + 100 * DAY, None),  # after the window
        ],
    )
    expected = {date(2031, 3, 11): 2, date(2031, 3, 12): 1}
    assert pki.stores.statistics.expiring_per_day(NOW, NOW + 90 * DAY) == expected
    engine = pki.stores.database.engine
    if engine.dialect.name == "postgresql":  # sessions east of UTC must not move the days
        tokyo = create_engine(engine.url, connect_args={"options": "-c timezone=Asia/Tokyo"})
        try:
            with tokyo.connect() as conn:
                assert conn.execute(text("SHOW timezone")).scalar_one() == "Asia/Tokyo"
            assert SqlStatisticsStore(Database(tokyo)).expiring_per_day(NOW, NOW + 90 * DAY) == expected
        finally:
            tokyo.dispose()


def test_events_per_day(pki: Pki) -> None:
    actor = Actor(component="est", identity="device:plc-7")
    audit = pki.audit
    since = datetime.now(UTC) - 2 * DAY
    events = [
        audit.event(actor, EventType.ENROLL_SUCCEEDED, "plc-7"),
        audit.event(actor, EventType.ENROLL_SUCCEEDED, "plc-8"),
        audit.event(actor, EventType.ENROLL_REFUSED, "plc-9", reason="bad token"),
    ]
    audit.record(*events)
    counts = pki.stores.statistics.events_per_day(
        [EventType.ENROLL_SUCCEEDED.value, EventType.ENROLL_REFUSED.value], since
    )
    day = events[0].time.astimezone(UTC).date()
    assert counts == {(day, "enroll.succeeded"): 2, (day, "enroll.refused"): 1}
    assert pki.stores.statistics.events_per_day(["enroll.succeeded"], events[0].time + DAY) == {}
