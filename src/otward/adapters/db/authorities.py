"""Certificate authorities: their certificates, key references and OCSP responders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Connection, Row, delete, insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.certificates import insert_certificates
from otward.adapters.db.database import Database
from otward.adapters.db.schema import authorities, pending_authorities
from otward.core.audit import AuditEvent
from otward.core.records import AuthorityRecord, CertificateRecord, PendingAuthorityRecord
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
        external_chain=_chain_der(row.external_chain_pem),
        superseded_by=row.superseded_by,
    )


def _chain_der(pem: str | None) -> tuple[bytes, ...]:
    if not pem:
        return ()
    return tuple(c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(pem.encode()))


def _chain_pem(chain: Sequence[bytes]) -> str | None:
    if not chain:
        return None
    return "".join(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM).decode() for d in chain)


def _pending_record(row: Row[Any]) -> PendingAuthorityRecord:
    return PendingAuthorityRecord(
        name=row.name,
        key_ref=row.key_ref,
        csr_der=bytes(row.csr_der),
        path_length=row.path_length,
        created_at=row.created_at,
    )


def _refuse_taken(conn: Connection, name: str, *, pending_ok: bool = False) -> None:
    if conn.execute(select(authorities.c.name).where(authorities.c.name == name)).first():
        raise ConflictError(f"CA '{name}' already exists", rule="ca-exists")
    if (
        not pending_ok
        and conn.execute(select(pending_authorities.c.name).where(pending_authorities.c.name == name)).first()
    ):
        raise ConflictError(
            f"CA '{name}' already exists and waits for its certificate (otward ca import-cert {name})",
            rule="ca-exists",
        )


def _insert_authority(conn: Connection, authority: AuthorityRecord) -> None:
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
            external_chain_pem=_chain_pem(authority.external_chain),
            superseded_by=authority.superseded_by,
        )
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
            _refuse_taken(conn, authority.name)
            _insert_authority(conn, authority)
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

    def add_pending_authority(self, pending: PendingAuthorityRecord, events: Sequence[AuditEvent]) -> None:
        with self._database.transaction() as conn:
            _refuse_taken(conn, pending.name)
            conn.execute(
                insert(pending_authorities).values(
                    name=pending.name,
                    key_ref=pending.key_ref,
                    csr_der=pending.csr_der,
                    path_length=pending.path_length,
                    created_at=pending.created_at,
                )
            )
            ledger.append(conn, events)

    def get_pending_authority(self, name: str) -> PendingAuthorityRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(select(pending_authorities).where(pending_authorities.c.name == name)).first()
        return _pending_record(row) if row else None

    def list_pending_authorities(self) -> Sequence[PendingAuthorityRecord]:
        with self._database.reading() as conn:
            rows = conn.execute(
                select(pending_authorities).order_by(
                    pending_authorities.c.created_at, pending_authorities.c.name
                )
            ).all()
        return [_pending_record(r) for r in rows]

    def activate_authority(
        self,
        authority: AuthorityRecord,
        certificates: Sequence[CertificateRecord],
        events: Sequence[AuditEvent],
    ) -> None:
        with self._database.transaction() as conn:
            _refuse_taken(conn, authority.name, pending_ok=True)
            removed = conn.execute(
                delete(pending_authorities).where(pending_authorities.c.name == authority.name)
            )
            if removed.rowcount != 1:
                raise NotFoundError(f"CA '{authority.name}' is not waiting for a certificate", rule="ca")
            _insert_authority(conn, authority)
            insert_certificates(conn, certificates)
            ledger.append(conn, events, certificates)

    def replace_certificate(
        self,
        name: str,
        certificate: CertificateRecord,
        events: Sequence[AuditEvent],
        *,
        parent: str | None,
        external_chain: Sequence[bytes] = (),
        store_certificate: bool = True,
    ) -> None:
        with self._database.transaction() as conn:
            stored = [certificate] if store_certificate else []
            insert_certificates(conn, stored)
            ledger.append(conn, events, stored)
            result = conn.execute(
                update(authorities)
                .where(authorities.c.name == name)
                .values(
                    certificate_der=certificate.der,
                    parent=parent,
                    external_chain_pem=_chain_pem(external_chain),
                )
            )
            if result.rowcount != 1:
                raise NotFoundError(f"CA '{name}' not found", rule="ca")

    def add_successor(
        self,
        previous: str,
        successor: AuthorityRecord,
        certificates: Sequence[CertificateRecord],
        events: Sequence[AuditEvent],
    ) -> None:
        with self._database.transaction() as conn:
            _refuse_taken(conn, successor.name)
            # Only a CA not superseded yet: two rollovers racing leave one successor, not two.
            result = conn.execute(
                update(authorities)
                .where(authorities.c.name == previous, authorities.c.superseded_by.is_(None))
                .values(superseded_by=successor.name)
            )
            if result.rowcount != 1:
                raise ConflictError(f"CA '{previous}' was rolled over already", rule="ca-superseded")
            _insert_authority(conn, successor)
            insert_certificates(conn, certificates)
            ledger.append(conn, events, certificates)
