"""The notification outbox and the conditions already announced.

A decision (new messages and the marks they announce) is committed in one transaction, so a
crash after it still sends every message, and a crash before it decides again. On PostgreSQL
decisions of several nodes are serialised by a transaction-scoped advisory lock, and senders
claim due rows with ``SELECT ... FOR UPDATE SKIP LOCKED``: each message goes out from one node
at a time. SQLite has one writer anyway.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, text, update

from otward.adapters.db import ledger
from otward.adapters.db.database import Database
from otward.adapters.db.schema import certificates, devices, notify_conditions, notify_outbox
from otward.core.audit import AuditEvent
from otward.core.notifications import ExpiringCertificate, NotifyEvent
from otward.core.records import CertificateKind

__all__ = ["FAILED", "PENDING", "SENT", "OutboxEntry", "OutboxRow", "Plan", "SqlNotificationStore"]

_DECISION_LOCK = 0x6F74_6E6F  # "otno": the advisory lock id of notification decisions
PENDING, SENT, FAILED = "pending", "sent", "failed"

Announced = Mapping[str, tuple[NotifyEvent, frozenset[str]]]


@dataclass(frozen=True)
class OutboxEntry:
    """A message for one channel, as decided."""

    notification_id: str
    channel: str
    event: str
    subject: str
    payload: str


@dataclass(frozen=True)
class OutboxRow:
    id: int
    notification_id: str
    channel: str
    event: str
    subject: str
    payload: str
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class Plan:
    """What a decision writes: marks to store, keys to forget, messages to queue."""

    store: Mapping[str, tuple[NotifyEvent, frozenset[str]]]
    forget: Sequence[str]
    entries: Sequence[OutboxEntry]


def _row(row: object) -> OutboxRow:
    return OutboxRow(**{name: getattr(row, name) for name in OutboxRow.__dataclass_fields__})


class SqlNotificationStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def _lock(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _DECISION_LOCK})

    def announced(self) -> dict[str, tuple[NotifyEvent, frozenset[str]]]:
        with self._database.reading() as conn:
            return self._announced(conn)

    @staticmethod
    def _announced(conn: Connection) -> dict[str, tuple[NotifyEvent, frozenset[str]]]:
        stored = {}
        for row in conn.execute(select(notify_conditions)):
            try:
                event = NotifyEvent(row.event)
            except ValueError:
                continue  # an event a newer otward knows: left alone
            stored[row.key] = (event, frozenset(str(m) for m in json.loads(row.marks)))
        return stored

    def save_decision(self, now: datetime, plan: Callable[[Announced], Plan]) -> list[OutboxEntry]:
        """Read what was announced, let ``plan`` decide, and store its outcome, all in one
        transaction under the decision lock; returns the entries queued."""
        with self._database.transaction() as conn:
            self._lock(conn)
            decided = plan(self._announced(conn))
            for key, (event, marks) in decided.store.items():
                values = {"event": event.value, "marks": json.dumps(sorted(marks)), "updated_at": now}
                if (
                    conn.execute(
                        update(notify_conditions).where(notify_conditions.c.key == key).values(**values)
                    ).rowcount
                    == 0
                ):
                    conn.execute(insert(notify_conditions).values(key=key, **values))
            if decided.forget:
                conn.execute(
                    delete(notify_conditions).where(notify_conditions.c.key.in_(list(decided.forget)))
                )
            if decided.entries:
                conn.execute(
                    insert(notify_outbox),
                    [
                        {
                            "notification_id": e.notification_id,
                            "channel": e.channel,
                            "event": e.event,
                            "subject": e.subject,
                            "payload": e.payload,
                            "status": PENDING,
                            "attempts": 0,
                            "next_attempt_at": now,
                            "created_at": now,
                            "updated_at": now,
                            "last_error": None,
                        }
                        for e in decided.entries
                    ],
                )
        return list(decided.entries)

    def claim_due(self, now: datetime, lease_until: datetime, limit: int = 50) -> list[OutboxRow]:
        """Pending rows due at ``now``, claimed until ``lease_until`` (their attempt counted): rows
        another node holds locked are skipped, and a sender that dies leaves its rows due again."""
        with self._database.transaction() as conn:
            ids = list(
                conn.execute(
                    select(notify_outbox.c.id)
                    .where(notify_outbox.c.status == PENDING, notify_outbox.c.next_attempt_at <= now)
                    .order_by(notify_outbox.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not ids:
                return []
            conn.execute(
                update(notify_outbox)
                .where(notify_outbox.c.id.in_(ids))
                .values(next_attempt_at=lease_until, attempts=notify_outbox.c.attempts + 1, updated_at=now)
            )
            rows = conn.execute(
                select(notify_outbox).where(notify_outbox.c.id.in_(ids)).order_by(notify_outbox.c.id)
            )
            return [_row(r) for r in rows]

    def finish(
        self,
        row_id: int,
        now: datetime,
        *,
        status: str,
        error: str | None,
        retry_at: datetime | None = None,
        events: Sequence[AuditEvent] = (),
    ) -> None:
        """Record an attempt's outcome (``sent``, ``failed``, or ``pending`` again at ``retry_at``)
        with its audit events in the same transaction."""
        values: dict[str, object] = {"status": status, "updated_at": now, "last_error": error}
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        with self._database.transaction() as conn:
            conn.execute(update(notify_outbox).where(notify_outbox.c.id == row_id).values(**values))
            ledger.append(conn, events)

    def purge_finished(self, before: datetime) -> int:
        """Delete sent and failed rows last touched before ``before``; returns how many."""
        with self._database.transaction() as conn:
            return int(
                conn.execute(
                    delete(notify_outbox).where(
                        notify_outbox.c.status.in_([SENT, FAILED]), notify_outbox.c.updated_at < before
                    )
                ).rowcount
            )

    def list_outbox(self, *, status: str | None = None, limit: int = 100) -> list[OutboxRow]:
        """Newest first."""
        query = select(notify_outbox).order_by(notify_outbox.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(notify_outbox.c.status == status)
        with self._database.reading() as conn:
            return [_row(r) for r in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        with self._database.reading() as conn:
            rows = conn.execute(select(notify_outbox.c.status, func.count()).group_by(notify_outbox.c.status))
            return {str(status): int(n) for status, n in rows}

    def expiring_certificates(self, now: datetime, until: datetime) -> list[ExpiringCertificate]:
        """Unrevoked end-entity certificates expiring in ``(now, until]`` with their device's owner.
        A renewed certificate is done: a device's only while it is the device's current one, any
        other only while no unrevoked certificate of the same CA, profile and subject outlives it
        (the service's own TLS certificate and signers are renewed that way, by otward itself)."""
        # Two subqueries joined: the candidates (by the notAfter index) and the newest unrevoked notAfter
        # per CA, profile and subject (one grouped scan). A correlated NOT EXISTS, or a join with the
        # table itself, had no index on the subject to use and went quadratic (24 s for 5,000).
        end_entity = certificates.c.kind == CertificateKind.END_ENTITY.value
        unrevoked = certificates.c.revoked_at.is_(None)
        candidates = (
            select(
                certificates.c.serial,
                certificates.c.ca,
                certificates.c.profile,
                certificates.c.subject,
                certificates.c.not_valid_after,
                certificates.c.device_id,
            )
            .where(
                unrevoked,
                end_entity,
                certificates.c.not_valid_after > now,
                certificates.c.not_valid_after <= until,
            )
            .cte("candidates")
            .prefix_with("MATERIALIZED")  # else SQLite flattens it and scans per group
        )
        latest = (
            select(
                certificates.c.ca,
                certificates.c.profile,
                certificates.c.subject,
                func.max(certificates.c.not_valid_after).label("latest"),
            )
            .where(unrevoked, end_entity)
            .group_by(certificates.c.ca, certificates.c.profile, certificates.c.subject)
            .subquery()
        )
        query = (
            select(
                candidates.c.serial,
                candidates.c.ca,
                candidates.c.subject,
                candidates.c.not_valid_after,
                candidates.c.device_id,
                devices.c.owner,
                devices.c.current_serial,
            )
            .select_from(
                candidates.join(
                    latest,
                    (latest.c.ca == candidates.c.ca)
                    & (latest.c.profile == candidates.c.profile)
                    & (latest.c.subject == candidates.c.subject),
                ).outerjoin(devices, devices.c.device_id == candidates.c.device_id)
            )
            .where(candidates.c.not_valid_after >= latest.c.latest)
            .order_by(candidates.c.not_valid_after)
        )
        found = []
        with self._database.reading() as conn:
            for row in conn.execute(query):
                if row.device_id is not None and row.current_serial not in (None, row.serial):
                    continue
                found.append(
                    ExpiringCertificate(row.serial, row.ca, row.owner, row.subject, row.not_valid_after)
                )
        return found
