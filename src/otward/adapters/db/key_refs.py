"""Where the keys of CAs, responders and signers live: their references, moved all at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select, update

from otward.adapters.db import ledger
from otward.adapters.db.database import Database
from otward.adapters.db.schema import authorities, signers
from otward.core.audit import AuditEvent

__all__ = ["SqlKeyRefStore"]


class SqlKeyRefStore:
    """Implements :class:`otward.core.ports.KeyRefStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def key_refs(self) -> list[str]:
        with self._database.reading() as conn:
            refs = [
                ref
                for row in conn.execute(select(authorities.c.key_ref, authorities.c.ocsp_key_ref))
                for ref in row
            ]
            refs += [row.key_ref for row in conn.execute(select(signers.c.key_ref))]
        return refs

    def replace_key_refs(self, moves: Mapping[str, str], events: Sequence[AuditEvent] = ()) -> int:
        with self._database.transaction() as conn:
            changed = 0
            for old, new in moves.items():
                for column in (authorities.c.key_ref, authorities.c.ocsp_key_ref):
                    changed += conn.execute(
                        update(authorities).where(column == old).values({column.name: new})
                    ).rowcount
                changed += conn.execute(
                    update(signers).where(signers.c.key_ref == old).values(key_ref=new)
                ).rowcount
            ledger.append(conn, events, [])
        return changed
