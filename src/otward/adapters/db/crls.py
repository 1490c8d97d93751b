"""Each CA's current CRL, numbered without gaps or repeats across workers."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, insert, or_, select, update

from otward.adapters.db import ledger
from otward.adapters.db.certificates import revoked_entries_in
from otward.adapters.db.database import Database
from otward.adapters.db.schema import authorities, certificates, crls
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
            revoked = revoked_entries_in(conn, ca)
            record, events = build(int(number), revoked)
            ledger.append(conn, events)
            values = {
                "revoked_count": len(revoked),
                "crl_number": record.crl_number,
                "this_update": record.this_update,
                "next_update": record.next_update,
                "der": record.der,
            }
            if conn.execute(update(crls).where(crls.c.ca == ca).values(**values)).rowcount == 0:
                conn.execute(insert(crls).values(ca=ca, **values))
        return record

    def stale_crls(self) -> Sequence[str]:
        """CAs whose stored CRL does not list exactly the revocations committed for them (or that have
        none): what a crash or a failed signing between a revocation and its CRL leaves behind.

        Counting instead of comparing times: a revocation stamped before a CRL's thisUpdate may still
        have committed after that CRL read the revoked list, and clocks of several nodes differ."""
        revoked = (
            select(certificates.c.ca, func.count().label("revoked"))
            .where(certificates.c.revoked_at.is_not(None))
            .group_by(certificates.c.ca)
            .subquery()
        )
        stmt = (
            select(authorities.c.name)
            .select_from(
                authorities.outerjoin(crls, crls.c.ca == authorities.c.name).outerjoin(
                    revoked, revoked.c.ca == authorities.c.name
                )
            )
            .where(
                or_(
                    crls.c.ca.is_(None),
                    crls.c.revoked_count.is_(None),
                    func.coalesce(revoked.c.revoked, 0) != crls.c.revoked_count,
                )
            )
            .order_by(authorities.c.name)
        )
        with self._database.reading() as conn:
            return [name for (name,) in conn.execute(stmt)]

    def get_crl(self, ca: str) -> CrlRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(select(crls).where(crls.c.ca == ca)).first()
        if row is None:
            return None
        return CrlRecord(ca, int(row.crl_number), row.this_update, row.next_update, bytes(row.der))
