"""Each CA's current CRL, numbered without gaps or repeats across workers."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.certificates import revoked_entries_in
from otward.adapters.db.database import Database
from otward.adapters.db.schema import authorities, crls
from otward.core.ports import CrlBuilder
from otward.core.records import CrlRecord
from otward.errors import NotFoundError

__all__ = ["SqlCrlStore"]


class SqlCrlStore:
    """Implements :class:`otward.core.ports.CrlStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def save_crl(self, ca: str, build: CrlBuilder) -> CrlRecord:
        with self._database.transaction() as conn:
            # Taking the number first also takes the row lock (PostgreSQL) or the write lock
            # (SQLite), so two workers never publish the same number or go backwards.
            number = conn.execute(
                update(authorities)
                .where(authorities.c.name == ca)
                .values(crl_number=authorities.c.crl_number + 1)
                .returning(authorities.c.crl_number)
            ).scalar_one_or_none()
            if number is None:
                raise NotFoundError(f"CA '{ca}' not found", rule="ca")
            record, events = build(int(number), revoked_entries_in(conn, ca))
            ledger.append(conn, events)
            values = {
                "crl_number": record.crl_number,
                "this_update": record.this_update,
                "next_update": record.next_update,
                "der": record.der,
            }
            if conn.execute(update(crls).where(crls.c.ca == ca).values(**values)).rowcount == 0:
                conn.execute(insert(crls).values(ca=ca, **values))
        return record

    def get_crl(self, ca: str) -> CrlRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(select(crls).where(crls.c.ca == ca)).first()
        if row is None:
            return None
        return CrlRecord(ca, int(row.crl_number), row.this_update, row.next_update, bytes(row.der))
