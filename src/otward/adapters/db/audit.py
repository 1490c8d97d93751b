"""The audit trail: appending events, reading and filtering them, signed chain heads and the
cursors of the forwarders that ship the trail off the machine."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.database import Database
from otward.adapters.db.schema import audit_events, audit_heads, forward_cursors, ledger_state
from otward.core.audit import AuditEvent, AuditFilter, AuditRecord, EventType, Outcome, SignedHead
from otward.core.records import format_serial
from otward.errors import IntegrityError

__all__ = ["SqlAuditStore"]


def _signed_head(row: Row[Any]) -> SignedHead:
    try:
        return SignedHead(
            int(row.sequence),
            bytes(row.hash),
            row.signed_at,
            bytes(row.signature),
            int(row.signer_serial, 16),
        )
    except (ValueError, TypeError) as exc:
        raise _unreadable_head(exc) from exc


def _unreadable_head(exc: Exception) -> IntegrityError:
    """A head row that does not parse (a time that is no time, a serial that is no hex): someone wrote
    it by hand; verification reports it instead of failing with a traceback."""
    return IntegrityError(f"a signed head is unreadable (altered?): {exc}", rule="audit-head-unreadable")


def _audit_record(row: Row[Any]) -> AuditRecord:
    try:
        return _parse_audit_row(row)
    except (ValueError, TypeError, KeyError) as exc:
        sequence = int(row.sequence)
        message = f"audit record {sequence} is unreadable (altered?)"
        raise IntegrityError(message, rule="audit-unreadable", sequence=sequence) from exc


def _parse_audit_row(row: Row[Any]) -> AuditRecord:
    event = AuditEvent(
        time=row.time,
        host=row.host,
        component=row.component,
        type=EventType(row.type),
        subject=row.subject,
        outcome=Outcome(row.outcome),
        reason=row.reason,
        source=row.source,
        request_id=row.request_id,
        details=json.loads(row.details),
    )
    return AuditRecord(int(row.sequence), event, bytes(row.previous_hash), bytes(row.hash))


class SqlAuditStore:
    """Implements :class:`otward.core.ports.AuditStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def append_events(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """Record events that accompany no other write (refusals, authentication failures)."""
        with self._database.transaction() as conn:
            return ledger.append(conn, events)

    def audit_head(self) -> tuple[int, bytes]:
        with self._database.reading() as conn:
            row = conn.execute(select(ledger_state.c.audit_sequence, ledger_state.c.audit_hash)).one()
        return int(row.audit_sequence), bytes(row.audit_hash)

    def list_audit(
        self, query: AuditFilter, *, limit: int, offset: int, newest_first: bool = False
    ) -> tuple[Sequence[AuditRecord], int]:
        conditions = []
        if query.since is not None:
            conditions.append(audit_events.c.time >= query.since)
        if query.until is not None:
            conditions.append(audit_events.c.time < query.until)
        if query.type is not None:
            conditions.append(audit_events.c.type == query.type)
        if query.subject is not None:
            conditions.append(audit_events.c.subject == query.subject)
        if query.outcome is not None:
            conditions.append(audit_events.c.outcome == query.outcome)
        if query.after_sequence is not None:
            conditions.append(audit_events.c.sequence > query.after_sequence)
        if query.component is not None:
            conditions.append(audit_events.c.component == query.component)
        if query.subject_contains:
            conditions.append(audit_events.c.subject.icontains(query.subject_contains, autoescape=True))
        stmt = select(audit_events)
        count = select(func.count()).select_from(audit_events)
        if conditions:
            stmt = stmt.where(and_(*conditions))
            count = count.where(and_(*conditions))
        with self._database.reading() as conn:
            order = audit_events.c.sequence.desc() if newest_first else audit_events.c.sequence
            rows = conn.execute(stmt.order_by(order).limit(limit).offset(offset)).all()
            total = conn.execute(count).scalar_one()
        return [_audit_record(r) for r in rows], int(total)

    def iter_audit(self, *, batch: int = 5000) -> Iterator[AuditRecord]:
        """Every record in sequence order, read in batches (for verification and export)."""
        after = 0
        while True:
            with self._database.reading() as conn:
                rows = conn.execute(
                    select(audit_events)
                    .where(audit_events.c.sequence > after)
                    .order_by(audit_events.c.sequence)
                    .limit(batch)
                ).all()
            if not rows:
                return
            for row in rows:
                yield _audit_record(row)
            after = int(rows[-1].sequence)

    def add_audit_head(self, head: SignedHead, *, after: SignedHead | None) -> bool:
        with self._database.transaction() as conn:
            # The ledger row lock (PostgreSQL; SQLite's writer lock already serialises) orders the
            # workers that sign on the same schedule: the check below sees the other's head.
            conn.execute(select(ledger_state.c.audit_sequence).with_for_update()).one()
            row = conn.execute(select(audit_heads).order_by(audit_heads.c.id.desc()).limit(1)).first()
            latest = _signed_head(row) if row is not None else None
            if latest != after:
                return False
            conn.execute(
                insert(audit_heads).values(
                    sequence=head.sequence,
                    hash=head.hash,
                    signed_at=head.signed_at,
                    signature=head.signature,
                    signer_serial=format_serial(head.signer_serial),
                )
            )
            return True

    def audit_heads(self) -> Sequence[SignedHead]:
        try:
            with self._database.reading() as conn:
                rows = conn.execute(select(audit_heads).order_by(audit_heads.c.id)).all()
        except (ValueError, TypeError) as exc:  # a column that does not convert (SQLite stores text)
            raise _unreadable_head(exc) from exc
        return [_signed_head(r) for r in rows]

    def latest_audit_head(self) -> SignedHead | None:
        """The most recent signed head: one row, however long the service has run."""
        try:
            with self._database.reading() as conn:
                row = conn.execute(select(audit_heads).order_by(audit_heads.c.id.desc()).limit(1)).first()
        except (ValueError, TypeError) as exc:
            raise _unreadable_head(exc) from exc
        return _signed_head(row) if row is not None else None

    def forward_cursor(self, name: str) -> int:
        """The last sequence forwarder ``name`` delivered (0 before the first)."""
        with self._database.reading() as conn:
            value = conn.execute(
                select(forward_cursors.c.sequence).where(forward_cursors.c.name == name)
            ).scalar_one_or_none()
        return int(value) if value is not None else 0

    def set_forward_cursor(self, name: str, sequence: int, when: datetime) -> None:
        with self._database.transaction() as conn:
            changed = conn.execute(
                update(forward_cursors)
                .where(forward_cursors.c.name == name)
                .values(sequence=sequence, updated_at=when)
            ).rowcount
            if not changed:
                conn.execute(insert(forward_cursors).values(name=name, sequence=sequence, updated_at=when))
