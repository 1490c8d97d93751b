"""Appending to the audit chain and the transparency log inside the caller's transaction.

Both are strictly sequential, so every append first updates the single
``ledger_state`` row: that takes the row lock (PostgreSQL) or the write lock
(SQLite) before anything is read, and two writers can never chain onto the same
head. Because the append runs in the transaction of the action it records, an
action is never committed without its event, nor an event without its action.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import BigInteger, Connection, bindparam, insert, update

from otward.adapters.db.schema import audit_events, ledger_state, log_entries
from otward.core.audit import AuditEvent, AuditRecord, chain_hash
from otward.core.merkle import leaf_hash
from otward.core.records import CertificateRecord

__all__ = ["append"]

# Built once: on the issuance path these run for every certificate.
_ADVANCE = (
    update(ledger_state)
    .where(ledger_state.c.id == 1)
    .values(
        audit_sequence=ledger_state.c.audit_sequence + bindparam("events", type_=BigInteger),
        log_size=ledger_state.c.log_size + bindparam("logged", type_=BigInteger),
    )
    .returning(ledger_state.c.audit_sequence, ledger_state.c.audit_hash, ledger_state.c.log_size)
)
_SET_HEAD = update(ledger_state).where(ledger_state.c.id == 1).values(audit_hash=bindparam("head"))
_INSERT_EVENT = insert(audit_events)
_INSERT_LEAF = insert(log_entries)


def append(
    conn: Connection, events: Sequence[AuditEvent], logged: Sequence[CertificateRecord] = ()
) -> list[AuditRecord]:
    """Chain ``events`` and log ``logged`` certificates; returns the new audit records."""
    if not events and not logged:
        return []
    state = conn.execute(_ADVANCE, {"events": len(events), "logged": len(logged)}).one()
    records: list[AuditRecord] = []
    previous = bytes(state.audit_hash)
    first_sequence = int(state.audit_sequence) - len(events) + 1
    for offset, event in enumerate(events):
        current = chain_hash(previous, event)
        records.append(AuditRecord(first_sequence + offset, event, previous, current))
        previous = current
    if records:
        conn.execute(
            _INSERT_EVENT,
            [
                {
                    "sequence": r.sequence,
                    "time": r.event.time,
                    "host": r.event.host,
                    "component": r.event.component,
                    "type": r.event.type.value,
                    "subject": r.event.subject,
                    "outcome": r.event.outcome.value,
                    "reason": r.event.reason,
                    "source": r.event.source,
                    "request_id": r.event.request_id,
                    "details": json.dumps(dict(r.event.details), sort_keys=True),
                    "previous_hash": r.previous_hash,
                    "hash": r.hash,
                }
                for r in records
            ],
        )
        conn.execute(_SET_HEAD, {"head": previous})
    if logged:
        first_index = int(state.log_size) - len(logged)
        conn.execute(
            _INSERT_LEAF,
            [
                {
                    "leaf_index": first_index + offset,
                    "serial": record.serial,
                    "leaf_hash": leaf_hash(record.der),
                    "logged_at": record.created_at,
                }
                for offset, record in enumerate(logged)
            ],
        )
    return records
