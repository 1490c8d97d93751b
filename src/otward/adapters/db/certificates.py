"""Certificates: issuance (group commit), look-up, listing, revocation and status.

Core statements instead of ORM objects keep the issuance and OCSP hot paths lean
(one INSERT, one indexed SELECT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from cryptography.x509 import ReasonFlags
from sqlalchemy import Connection, Row, and_, bindparam, func, insert, or_, select, update

from otward.adapters.db import ledger
from otward.adapters.db.database import Database, revoke_once
from otward.adapters.db.group_commit import GroupCommit, Pending
from otward.adapters.db.schema import certificates, devices, subject_names
from otward.core.audit import AuditEvent
from otward.core.identity import Namespace
from otward.core.records import CertificateFilter, CertificateKind, CertificateRecord, format_serial
from otward.core.revocation import RevokedEntry
from otward.errors import OtwardError, PolicyViolationError

__all__ = [
    "SqlCertificateStore",
    "certificate_record",
    "certificate_row",
    "insert_certificates",
    "refuse_if_revoked",
    "revoked_entries_in",
]

_REASONS = {flag.value: flag for flag in ReasonFlags}


def certificate_row(record: CertificateRecord) -> dict[str, Any]:
    return {
        "serial": record.serial,
        "ca": record.ca,
        "profile": record.profile,
        "kind": record.kind.value,
        "subject": record.subject[:1024],
        "not_valid_before": record.not_valid_before,
        "not_valid_after": record.not_valid_after,
        "der": record.der,
        "created_at": record.created_at,
        "revoked_at": record.revoked_at,
        "revocation_reason": record.revocation_reason.value if record.revocation_reason else None,
        "device_id": record.device_id,
    }


def certificate_record(row: Row[Any]) -> CertificateRecord:
    return CertificateRecord(
        serial_number=int(row.serial, 16),
        ca=row.ca,
        profile=row.profile,
        kind=CertificateKind(row.kind),
        subject=row.subject,
        not_valid_before=row.not_valid_before,
        not_valid_after=row.not_valid_after,
        der=bytes(row.der),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        revocation_reason=_REASONS[row.revocation_reason] if row.revocation_reason is not None else None,
        device_id=row.device_id,
    )


# Statements of the hot paths, built once (SQLAlchemy then only binds parameters).
_INSERT_CERTIFICATE = insert(certificates)
_CERTIFICATE_STATUS = select(certificates.c.revoked_at, certificates.c.revocation_reason).where(
    certificates.c.serial == bindparam("serial"), certificates.c.ca == bindparam("ca")
)
_REVOKED_AMONG = select(func.count()).where(
    certificates.c.serial.in_(bindparam("serials", expanding=True)), certificates.c.revoked_at.is_not(None)
)


def insert_certificates(conn: Connection, records: Sequence[CertificateRecord]) -> None:
    """Insert certificate rows (one statement, one row or many) inside the caller's transaction,
    with the client names they claim (:func:`claim_client_names`)."""
    rows = [certificate_row(r) for r in records]
    if rows:
        claim_client_names(conn, records)
        conn.execute(_INSERT_CERTIFICATE, rows[0] if len(rows) == 1 else rows)


_NAMESPACE_LABELS = {Namespace.DEVICE: "a device", Namespace.CLIENT: "an administrator-certified client"}


def claim_client_names(conn: Connection, records: Sequence[CertificateRecord]) -> None:
    """Claim the CN of each client certificate for its namespace (device or client), or refuse the
    write when the other namespace holds it: a device can never take an operator's name, nor an
    administrator-issued certificate a device's (otward.core.identity). Two writers claiming one
    new name at once meet at the primary key; the second fails and is retried alone."""
    wanted: dict[str, CertificateRecord] = {}
    for record in records:
        name = record.client_name
        if name is None:
            continue
        first = wanted.setdefault(name.key, record)
        if first.client_name is not None and first.client_name.namespace is not name.namespace:
            _refuse_name(name.name, first.client_name.namespace, name.namespace)
    if not wanted:
        return
    held = dict(
        conn.execute(
            select(subject_names.c.name, subject_names.c.namespace).where(subject_names.c.name.in_(wanted))
        ).all()
    )
    new = []
    for key, record in wanted.items():
        name = record.client_name
        assert name is not None  # noqa: S101 - only records with a name were collected
        if key not in held:
            new.append(
                {
                    "name": key,
                    "namespace": name.namespace.value,
                    "first_serial": record.serial,
                    "claimed_at": record.created_at,
                }
            )
        elif held[key] != name.namespace.value:
            _refuse_name(name.name, Namespace(held[key]), name.namespace)
    if new:
        conn.execute(insert(subject_names), new)


def _refuse_name(name: str, holder: Namespace, requester: Namespace) -> None:
    raise PolicyViolationError(
        f"the name '{name[:64]}' belongs to {_NAMESPACE_LABELS[holder]}; a certificate of"
        f" {_NAMESPACE_LABELS[requester]} cannot carry it (see docs/identity.md)",
        rule="identity-namespace",
    )


def refuse_if_revoked(conn: Connection, ca: str, issuer_serials: Sequence[int]) -> None:
    """Checked inside the write: a CA revoked by another process a moment ago signs nothing."""
    serials = [format_serial(s) for s in issuer_serials]
    if conn.execute(_REVOKED_AMONG, {"serials": serials}).scalar_one():
        raise PolicyViolationError(
            f"CA '{ca}' or one of its parents is revoked and cannot issue", rule="ca-revoked"
        )


def revoked_entries_in(conn: Connection, ca: str) -> list[RevokedEntry]:
    """The revoked certificates of ``ca``, read inside the caller's transaction (CRL signing)."""
    rows = conn.execute(
        select(certificates.c.serial, certificates.c.revoked_at, certificates.c.revocation_reason).where(
            certificates.c.ca == ca, certificates.c.revoked_at.is_not(None)
        )
    ).all()
    return [RevokedEntry(int(s, 16), when, _REASONS[r]) for s, when, r in rows]


def _retire_with_current(
    conn: Connection, device_id: str | None, serial: str, when: datetime
) -> list[CertificateRecord]:
    """If ``serial`` was ``device_id``'s current certificate, revoke (superseded) the device's other
    unrevoked certificates and clear its pending superseded one; returns them as revoked."""
    if device_id is None:
        return []
    current = conn.execute(select(devices.c.current_serial).where(devices.c.device_id == device_id)).scalar()
    if current != serial:
        return []
    others = and_(certificates.c.device_id == device_id, certificates.c.revoked_at.is_(None))
    rows = conn.execute(select(certificates).where(others)).all()
    if rows:
        conn.execute(
            update(certificates)
            .where(others)
            .values(revoked_at=when, revocation_reason=ReasonFlags.superseded.value)
        )
    conn.execute(
        update(devices)
        .where(devices.c.device_id == device_id)
        .values(superseded_serial=None, superseded_at=None)
    )
    superseded = ReasonFlags.superseded
    return [replace(certificate_record(r), revoked_at=when, revocation_reason=superseded) for r in rows]


class SqlCertificateStore:
    """Implements :class:`otward.core.ports.CertificateStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._group_commit = GroupCommit(self._commit_group)

    def add_certificate(
        self,
        record: CertificateRecord,
        events: Sequence[AuditEvent] = (),
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None:
        """Durable before it returns; concurrent callers share a transaction (group commit)."""
        self.submit(Pending(record, tuple(events), tuple(issuer_serials)))

    def submit(self, pending: Pending) -> None:
        """Queue a certificate write (with an enrollment's ``prepare``) for the next group commit."""
        self._group_commit.submit(pending)

    def _commit_group(self, group: list[Pending]) -> None:
        """One transaction for the whole group; if it fails, each one alone, so that one bad
        certificate (a serial collision, a CA revoked meanwhile) does not take the others down."""
        try:
            self._write_group(group)
        except OtwardError as exc:
            if len(group) == 1:
                group[0].error = exc
                return
            for pending in group:
                try:
                    self._write_group([pending])
                except OtwardError as single:
                    pending.error = single

    def _write_group(self, group: list[Pending]) -> None:
        serial_sets = {p.issuer_serials for p in group if p.issuer_serials}
        with self._database.transaction() as conn:
            insert_certificates(conn, [p.record for p in group])
            events = [e for p in group for e in p.events]
            for pending in group:
                if pending.prepare is not None:
                    events += pending.prepare(conn)
            for serial_set in serial_sets:
                refuse_if_revoked(conn, group[0].record.ca, serial_set)
            ledger.append(conn, events, [p.record for p in group])

    def add_certificates(
        self,
        records: Sequence[CertificateRecord],
        events: Sequence[AuditEvent],
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None:
        """Store certificates with their events and log entries in one transaction: all or nothing."""
        if not records:
            return
        with self._database.transaction() as conn:
            insert_certificates(conn, records)
            if issuer_serials:
                refuse_if_revoked(conn, records[0].ca, issuer_serials)
            ledger.append(conn, events, records)

    def get_certificate(self, serial_number: int) -> CertificateRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(
                select(certificates).where(certificates.c.serial == format_serial(serial_number))
            ).first()
        return certificate_record(row) if row else None

    def list_certificates(
        self, query: CertificateFilter, *, limit: int, offset: int
    ) -> tuple[Sequence[CertificateRecord], int]:
        conditions = []
        if query.ca is not None:
            conditions.append(certificates.c.ca == query.ca)
        if query.profile is not None:
            conditions.append(certificates.c.profile == query.profile)
        if query.revoked is True:
            conditions.append(certificates.c.revoked_at.is_not(None))
        elif query.revoked is False:
            conditions.append(certificates.c.revoked_at.is_(None))
        if query.expires_before is not None:
            conditions.append(certificates.c.not_valid_after < query.expires_before)
        if query.expires_after is not None:
            conditions.append(certificates.c.not_valid_after >= query.expires_after)
        if query.subject is not None:
            wanted = query.subject.lower()
            conditions.append(
                or_(
                    func.lower(certificates.c.subject).contains(wanted, autoescape=True),
                    func.lower(certificates.c.device_id).contains(wanted, autoescape=True),
                )
            )
        if query.serial_prefix is not None:
            conditions.append(certificates.c.serial.startswith(query.serial_prefix.lower(), autoescape=True))
        if query.owner is not None:
            conditions.append(
                certificates.c.device_id.in_(
                    select(devices.c.device_id).where(devices.c.owner == query.owner)
                )
            )
        where = and_(*conditions) if conditions else None
        with self._database.reading() as conn:
            stmt = select(certificates)
            count = select(func.count()).select_from(certificates)
            if where is not None:
                stmt = stmt.where(where)
                count = count.where(where)
            stmt = (
                stmt.order_by(certificates.c.created_at.desc(), certificates.c.serial)
                .limit(limit)
                .offset(offset)
            )
            rows = conn.execute(stmt).all()
            total = conn.execute(count).scalar_one()
        return [certificate_record(r) for r in rows], int(total)

    def revoke_certificate(
        self,
        serial_number: int,
        when: datetime,
        reason: ReasonFlags,
        events: Sequence[AuditEvent] = (),
        *,
        superseded_event: Callable[[CertificateRecord], AuditEvent] | None = None,
    ) -> CertificateRecord:
        serial = format_serial(serial_number)
        with self._database.transaction() as conn:
            row = revoke_once(
                conn,
                certificates.c.serial,
                serial,
                f"certificate {serial}",
                "serial",
                revoked_at=when,
                revocation_reason=reason.value,
            )
            retired = _retire_with_current(conn, row.device_id, serial, when)
            ledger.append(conn, [*events, *(superseded_event(r) for r in retired if superseded_event)])
        return certificate_record(row)

    def revoked_entries(self, ca: str) -> Sequence[RevokedEntry]:
        with self._database.reading() as conn:
            return revoked_entries_in(conn, ca)

    def certificate_status(self, ca: str, serial_number: int) -> tuple[bool, RevokedEntry | None]:
        with self._database.reading() as conn:
            row = conn.execute(
                _CERTIFICATE_STATUS, {"serial": format_serial(serial_number), "ca": ca}
            ).first()
        if row is None:
            return False, None
        if row.revoked_at is None:
            return True, None
        return True, RevokedEntry(serial_number, row.revoked_at, _REASONS[row.revocation_reason])
