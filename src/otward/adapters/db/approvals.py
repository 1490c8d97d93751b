"""Approval requests, with a compare-and-set on their state so that a request is decided once."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.database import Database
from otward.adapters.db.schema import approval_requests
from otward.core.approvals import ApprovalRequest, Operation, State
from otward.core.audit import AuditEvent

__all__ = ["SqlApprovalStore"]


def _record(row: Row[Any]) -> ApprovalRequest:
    return ApprovalRequest(
        id=row.id,
        operation=Operation(row.operation),
        parameters=json.loads(row.parameters),
        requester=row.requester,
        created_at=row.created_at,
        expires_at=row.expires_at,
        state=State(row.state),
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        reason=row.reason,
    )


class SqlApprovalStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, request: ApprovalRequest, events: Callable[[int], Sequence[AuditEvent]]) -> int:
        """Store ``request`` (its id is assigned here) with the events ``events(id)`` makes, in one
        transaction; returns the id."""
        with self._database.transaction() as conn:
            result = conn.execute(
                insert(approval_requests).values(
                    operation=request.operation.value,
                    parameters=json.dumps(dict(request.parameters), sort_keys=True),
                    requester=request.requester,
                    created_at=request.created_at,
                    expires_at=request.expires_at,
                    state=request.state.value,
                )
            )
            key = result.inserted_primary_key
            assert key is not None  # noqa: S101 - an insert returns its key
            ledger.append(conn, events(int(key[0])))
            return int(key[0])

    def get(self, request_id: int) -> ApprovalRequest | None:
        with self._database.reading() as conn:
            row = conn.execute(select(approval_requests).where(approval_requests.c.id == request_id)).first()
        return _record(row) if row is not None else None

    def list(self, *, state: State | None = None) -> Sequence[ApprovalRequest]:
        query = select(approval_requests).order_by(approval_requests.c.id)
        if state is not None:
            query = query.where(approval_requests.c.state == state.value)
        with self._database.reading() as conn:
            return [_record(r) for r in conn.execute(query).all()]

    def page(
        self,
        *,
        pending: bool,
        operations: Collection[Operation],
        limit: int,
        offset: int,
    ) -> tuple[Sequence[ApprovalRequest], int]:
        """The pending requests (oldest first) or the decided ones (newest first) of ``operations``,
        a page of them and how many there are (the console's lists)."""
        column = approval_requests.c.state
        conditions = [
            column == State.PENDING.value if pending else column != State.PENDING.value,
            approval_requests.c.operation.in_(sorted(o.value for o in operations)),
        ]
        order = approval_requests.c.id if pending else approval_requests.c.id.desc()
        query = select(approval_requests).where(*conditions).order_by(order).limit(limit).offset(offset)
        count = select(func.count()).select_from(approval_requests).where(*conditions)
        with self._database.reading() as conn:
            rows = conn.execute(query).all()
            total = conn.execute(count).scalar_one()
        return [_record(r) for r in rows], int(total)

    def transition(
        self,
        request_id: int,
        expected: State,
        new: State,
        *,
        decided_by: str | None,
        decided_at: datetime,
        reason: str | None,
        events: Sequence[AuditEvent] = (),
    ) -> bool:
        """Move the request from ``expected`` to ``new`` with its events, in one transaction; False
        (and nothing written) when it is no longer in ``expected`` — someone else decided first."""
        values: dict[str, Any] = {"state": new.value, "reason": reason}
        if decided_by is not None:
            values.update(decided_by=decided_by, decided_at=decided_at)
        with self._database.transaction() as conn:
            changed = conn.execute(
                update(approval_requests)
                .where(approval_requests.c.id == request_id, approval_requests.c.state == expected.value)
                .values(**values)
            ).rowcount
            if changed != 1:
                return False
            ledger.append(conn, events)
            return True
