"""Certificate authorities: their certificates, key references and OCSP responders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.certificates import insert_certificates
from otward.adapters.db.database import Database
from otward.adapters.db.schema import authorities
from otward.core.audit import AuditEvent
from otward.core.records import AuthorityRecord, CertificateRecord
from otward.errors import ConflictError, NotFoundError

__all__ = ["SqlAuthorityStore"]


def _authority_record(row: Row[Any]) -> AuthorityRecord:
    return AuthorityRecord(
        name=row.name,
        parent=row.parent,
        certificate_der=bytes(row.certificate_der),
        key_ref=row.key_ref,
        ocsp_certificate_der=bytes(row.ocsp_certificate_der),
        ocsp_key_ref=row.ocsp_key_ref,
        created_at=row.created_at,
    )


class SqlAuthorityStore:
    """Implements :class:`otward.core.ports.AuthorityStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add_authority(
        self,
        authority: AuthorityRecord,
        certificates: Sequence[CertificateRecord],
        events: Sequence[AuditEvent] = (),
    ) -> None:
        with self._database.transaction() as conn:
            if conn.execute(select(authorities.c.name).where(authorities.c.name == authority.name)).first():
                raise ConflictError(f"CA '{authority.name}' already exists", rule="ca-exists")
            conn.execute(
                insert(authorities).values(
                    name=authority.name,
                    parent=authority.parent,
                    certificate_der=authority.certificate_der,
                    key_ref=authority.key_ref,
                    ocsp_certificate_der=authority.ocsp_certificate_der,
                    ocsp_key_ref=authority.ocsp_key_ref,
                    crl_number=0,
                    created_at=authority.created_at,
                )
            )
            insert_certificates(conn, certificates)
            ledger.append(conn, events, certificates)

    def get_authority(self, name: str) -> AuthorityRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(select(authorities).where(authorities.c.name == name)).first()
        return _authority_record(row) if row else None

    def list_authorities(self) -> Sequence[AuthorityRecord]:
        with self._database.reading() as conn:
            rows = conn.execute(
                select(authorities).order_by(authorities.c.created_at, authorities.c.name)
            ).all()
        return [_authority_record(r) for r in rows]

    def replace_ocsp_responder(
        self, name: str, certificate: CertificateRecord, key_ref: str, events: Sequence[AuditEvent] = ()
    ) -> None:
        with self._database.transaction() as conn:
            insert_certificates(conn, [certificate])
            ledger.append(conn, events, [certificate])
            result = conn.execute(
                update(authorities)
                .where(authorities.c.name == name)
                .values(ocsp_certificate_der=certificate.der, ocsp_key_ref=key_ref)
            )
            if result.rowcount != 1:
                raise NotFoundError(f"CA '{name}' not found", rule="ca")
