"""Service signers (audit, edge): the current key and certificate of each, rotated atomically."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.certificates import insert_certificates
from otward.adapters.db.database import Database
from otward.adapters.db.schema import certificates, signers
from otward.core.audit import AuditEvent
from otward.core.records import CertificateRecord
from otward.errors import ConflictError

__all__ = ["SqlSignerStore"]


class SqlSignerStore:
    """Implements :class:`otward.core.ports.SignerStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add_signer(
        self, name: str, key_ref: str, certificate: CertificateRecord, events: Sequence[AuditEvent]
    ) -> None:
        with self._database.transaction() as conn:
            insert_certificates(conn, [certificate])
            conn.execute(
                insert(signers).values(
                    name=name, key_ref=key_ref, serial=certificate.serial, created_at=certificate.created_at
                )
            )
            ledger.append(conn, events, [certificate])

    def replace_signer(
        self,
        name: str,
        key_ref: str,
        certificate: CertificateRecord,
        events: Sequence[AuditEvent],
        *,
        previous_serial: str,
    ) -> None:
        """Make ``certificate`` the named signer's, in one transaction with its audit events; the
        previous certificate stays (what it signed remains verifiable).
        ConflictError if the signer is no longer ``previous_serial`` (another process rotated it)."""
        with self._database.transaction() as conn:
            insert_certificates(conn, [certificate])
            swapped = conn.execute(
                update(signers)
                .where(signers.c.name == name, signers.c.serial == previous_serial)
                .values(key_ref=key_ref, serial=certificate.serial, created_at=certificate.created_at)
            ).rowcount
            if swapped != 1:
                raise ConflictError(
                    f"signer '{name}' changed while it was being rotated; try again", rule="signer-rotated"
                )
            ledger.append(conn, events, [certificate])

    def get_signer(self, name: str) -> tuple[str, bytes] | None:
        """(key reference, certificate DER) of the named service signer."""
        with self._database.reading() as conn:
            row = conn.execute(
                select(signers.c.key_ref, certificates.c.der)
                .join(certificates, certificates.c.serial == signers.c.serial)
                .where(signers.c.name == name)
            ).first()
        return (row.key_ref, bytes(row.der)) if row else None
