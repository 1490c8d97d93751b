"""Files every node needs and only one node creates: encrypted key files and the service's TLS identity.

A node that creates a CA, a signer or a new OCSP responder writes the key file into its own data
directory; the other nodes share nothing but the database. So the file backend also stores what
it writes here (the PEM exactly as on disk: PKCS#8 encrypted with the CA passphrase, which never
enters the database), and a node that lacks a file fetches it from here. A destroyed key leaves a
row without data, so every node deletes its own copy too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import insert, select, update

from otward.adapters.db.database import Database
from otward.adapters.db.schema import shared_files

__all__ = ["SqlSharedFiles"]


class SqlSharedFiles:
    """Implements :class:`otward.core.ports.SharedFileStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def put_shared(self, name: str, data: bytes, *, replace: bool = False) -> None:
        now = datetime.now(UTC)
        with self._database.transaction() as conn:
            if replace:
                changed = conn.execute(
                    update(shared_files)
                    .where(shared_files.c.name == name)
                    .values(data=data, created_at=now, destroyed_at=None)
                ).rowcount
                if changed:
                    return
            conn.execute(insert(shared_files).values(name=name, data=data, created_at=now))

    def get_shared(self, name: str) -> bytes | None:
        with self._database.reading() as conn:
            data = conn.execute(select(shared_files.c.data).where(shared_files.c.name == name)).scalar()
        return bytes(data) if data is not None else None

    def destroy_shared(self, name: str) -> None:
        with self._database.transaction() as conn:
            conn.execute(
                update(shared_files)
                .where(shared_files.c.name == name)
                .values(data=None, destroyed_at=datetime.now(UTC))
            )

    def destroyed_shared(self) -> Sequence[str]:
        with self._database.reading() as conn:
            return list(
                conn.execute(
                    select(shared_files.c.name).where(shared_files.c.destroyed_at.is_not(None))
                ).scalars()
            )
