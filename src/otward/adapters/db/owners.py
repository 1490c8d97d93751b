"""Owners: the accounts devices belong to, each with the CA its devices enroll with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.database import Database
from otward.adapters.db.schema import owners
from otward.core.audit import AuditEvent
from otward.core.records import OwnerRecord
from otward.errors import ConflictError, NotFoundError

__all__ = ["SqlOwnerStore"]

_OWNER = select(owners).where(owners.c.name == bindparam("wanted_owner"))


def _owner_record(row: Row[Any]) -> OwnerRecord:
    return OwnerRecord(
        name=row.name,
        ca=row.ca,
        created_at=row.created_at,
        allow_server_keygen=bool(row.allow_server_keygen),
        renewal_grace_days=int(row.renewal_grace_days),
    )


class SqlOwnerStore:
    """Implements :class:`otward.core.ports.OwnerStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add_owner(self, owner: OwnerRecord, events: Sequence[AuditEvent] = ()) -> None:
        with self._database.transaction() as conn:
            if conn.execute(select(owners.c.name).where(owners.c.name == owner.name)).first():
                raise ConflictError(f"owner '{owner.name}' already exists", rule="owner-exists")
            conn.execute(
                insert(owners).values(
                    name=owner.name,
                    ca=owner.ca,
                    created_at=owner.created_at,
                    allow_server_keygen=owner.allow_server_keygen,
                    renewal_grace_days=owner.renewal_grace_days,
                )
            )
            ledger.append(conn, events)

    def get_owner(self, name: str) -> OwnerRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(_OWNER, {"wanted_owner": name}).first()
        return _owner_record(row) if row else None

    def list_owners(self) -> Sequence[OwnerRecord]:
        with self._database.reading() as conn:
            rows = conn.execute(select(owners).order_by(owners.c.name)).all()
        return [_owner_record(r) for r in rows]

    def update_owner(
        self,
        name: str,
        *,
        allow_server_keygen: bool | None,
        renewal_grace_days: int | None,
        events: Sequence[AuditEvent] = (),
    ) -> OwnerRecord:
        values: dict[str, Any] = {}
        if allow_server_keygen is not None:
            values["allow_server_keygen"] = allow_server_keygen
        if renewal_grace_days is not None:
            values["renewal_grace_days"] = renewal_grace_days
        with self._database.transaction() as conn:
            if values:
                conn.execute(update(owners).where(owners.c.name == name).values(**values))
            row = conn.execute(_OWNER, {"wanted_owner": name}).first()
            if row is None:
                raise NotFoundError(f"owner '{name}' not found", rule="owner")
            ledger.append(conn, events)
        return _owner_record(row)
