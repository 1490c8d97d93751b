"""The PKI store on SQLAlchemy Core: one short transaction per operation.

Core statements instead of ORM objects keep the issuance and OCSP hot paths
lean (one INSERT, one indexed SELECT). Every SQLAlchemy error is wrapped in
:class:`StorageError` so the services never see driver exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from cryptography.x509 import ReasonFlags
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.exc import SQLAlchemyError

from otward.adapters.db import ledger
from otward.adapters.db.engine import WriterLock
from otward.adapters.db.group_commit import GroupCommit, Pending
from otward.adapters.db.schema import (
    api_tokens,
    audit_events,
    audit_heads,
    authorities,
    certificates,
    crls,
    device_challenges,
    devices,
    enrollment_tokens,
    forward_cursors,
    ledger_state,
    log_entries,
    log_heads,
    owners,
    signers,
)
from otward.core.audit import AuditEvent, AuditFilter, AuditRecord, EventType, Outcome, SignedHead
from otward.core.ports import CrlBuilder
from otward.core.records import (
    AuthorityRecord,
    CertificateFilter,
    CertificateKind,
    CertificateRecord,
    ChallengeRecord,
    CrlRecord,
    DeviceEnrollment,
    DeviceRecord,
    DeviceStatus,
    EnrollmentTokenRecord,
    OwnerRecord,
    TokenRecord,
    format_serial,
)
from otward.core.revocation import RevokedEntry
from otward.core.transparency import TreeHead
from otward.errors import (
    AuthenticationError,
    ConflictError,
    IntegrityError,
    NotFoundError,
    OtwardError,
    PolicyViolationError,
    StorageError,
)

__all__ = ["STORED_CONFLICT", "SqlPkiStore", "revoke_once"]

_REASONS = {flag.value: flag for flag in ReasonFlags}


def _reason(value: str | None) -> ReasonFlags | None:
    return _REASONS[value] if value is not None else None


def _certificate_row(record: CertificateRecord) -> dict[str, Any]:
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


def _certificate_record(row: Row[Any]) -> CertificateRecord:
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
        revocation_reason=_reason(row.revocation_reason),
        device_id=row.device_id,
    )


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


# Statements of the hot paths, built once (SQLAlchemy then only binds parameters).
_INSERT_CERTIFICATE = insert(certificates)
_CERTIFICATE_STATUS = select(certificates.c.revoked_at, certificates.c.revocation_reason).where(
    certificates.c.serial == bindparam("serial"), certificates.c.ca == bindparam("ca")
)
_REVOKED_AMONG = select(func.count()).where(
    certificates.c.serial.in_(bindparam("serials", expanding=True)), certificates.c.revoked_at.is_not(None)
)


STORED_CONFLICT = "stored-conflict"  # the rule of a ConflictError the database raised (a unique key)


@contextmanager
def _database_errors() -> Iterator[None]:
    """Driver errors become otward errors; the services never see SQLAlchemy's."""
    try:
        yield
    except OtwardError:
        raise
    except DbIntegrityError as exc:
        raise ConflictError("the record conflicts with one already stored", rule=STORED_CONFLICT) from exc
    except SQLAlchemyError as exc:
        raise StorageError("database operation failed") from exc


def revoke_once(
    conn: Connection, key: Column[str], value: str, label: str, rule: str, **changes: object
) -> Row[Any]:
    """Set ``revoked_at`` (and ``changes``) on the row whose ``key`` is ``value``, only if it is not yet
    revoked: a revocation is never rewritten or undone. Returns the row as stored."""
    table = key.table
    changed = conn.execute(
        update(table).where(key == value, table.c.revoked_at.is_(None)).values(**changes)
    ).rowcount
    row = conn.execute(select(table).where(key == value)).first()
    if row is None:
        raise NotFoundError(f"{label} not found", rule=rule)
    if changed != 1:
        raise ConflictError(f"{label} is already revoked", rule="already-revoked")
    return row


def _refuse_if_revoked(conn: Connection, ca: str, issuer_serials: Sequence[int]) -> None:
    """Checked inside the write: a CA revoked by another process a moment ago signs nothing."""
    serials = [format_serial(s) for s in issuer_serials]
    if conn.execute(_REVOKED_AMONG, {"serials": serials}).scalar_one():
        raise PolicyViolationError(
            f"CA '{ca}' or one of its parents is revoked and cannot issue", rule="ca-revoked"
        )


# The enrollment path's statements, built once (a statement built per call costs its cache key).
_ENROLLMENT_TOKEN = select(enrollment_tokens).where(enrollment_tokens.c.token_id == bindparam("wanted_token"))
_OWNER = select(owners).where(owners.c.name == bindparam("wanted_owner"))
_DEVICE = select(devices).where(devices.c.device_id == bindparam("wanted_device"))
_HOLDING = select(func.count()).where(
    certificates.c.device_id == bindparam("wanted_device"),
    certificates.c.revoked_at.is_(None),
    certificates.c.not_valid_after > bindparam("at"),
)
_INSERT_DEVICE = insert(devices)
_SPEND_TOKEN = (
    update(enrollment_tokens)
    .where(
        enrollment_tokens.c.token_id == bindparam("spent_token"),
        enrollment_tokens.c.revoked_at.is_(None),
        enrollment_tokens.c.uses < enrollment_tokens.c.uses_allowed,
        enrollment_tokens.c.expires_at > bindparam("spent_at"),
    )
    .values(uses=enrollment_tokens.c.uses + 1)
)


class SqlPkiStore:
    """Implements :class:`otward.core.ports.PkiStore` on any SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer_lock = WriterLock.for_engine(engine)
        self._group_commit = GroupCommit(self._commit_group)

    def close(self) -> None:
        """Release the database connections and the writer lock's file."""
        self.engine.dispose()
        self._writer_lock.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads only: no BEGIN/COMMIT round of its own (SQLite reads in autocommit)."""
        with _database_errors(), self.engine.connect() as connection:
            yield connection

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A writing transaction: one at a time per SQLite file (the writer lock), driver errors
        mapped. Stores of other concepts on the same database (access, edge) write through it too."""
        with _database_errors(), self._writer_lock.held(), self.engine.begin() as connection:
            yield connection

    # --- authorities ---------------------------------------------------------------------------

    def add_authority(
        self,
        authority: AuthorityRecord,
        certificates_: Sequence[CertificateRecord],
        events: Sequence[AuditEvent] = (),
    ) -> None:
        with self.transaction() as conn:
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
            for record in certificates_:
                conn.execute(insert(certificates).values(**_certificate_row(record)))
            ledger.append(conn, events, certificates_)

    def get_authority(self, name: str) -> AuthorityRecord | None:
        with self.reading() as conn:
            row = conn.execute(select(authorities).where(authorities.c.name == name)).first()
        return _authority_record(row) if row else None

    def list_authorities(self) -> Sequence[AuthorityRecord]:
        with self.reading() as conn:
            rows = conn.execute(
                select(authorities).order_by(authorities.c.created_at, authorities.c.name)
            ).all()
        return [_authority_record(r) for r in rows]

    def replace_ocsp_responder(
        self, name: str, certificate: CertificateRecord, key_ref: str, events: Sequence[AuditEvent] = ()
    ) -> None:
        with self.transaction() as conn:
            conn.execute(insert(certificates).values(**_certificate_row(certificate)))
            ledger.append(conn, events, [certificate])
            result = conn.execute(
                update(authorities)
                .where(authorities.c.name == name)
                .values(ocsp_certificate_der=certificate.der, ocsp_key_ref=key_ref)
            )
            if result.rowcount != 1:
                raise NotFoundError(f"CA '{name}' not found", rule="ca")

    # --- certificates --------------------------------------------------------------------------

    def add_certificate(
        self,
        record: CertificateRecord,
        events: Sequence[AuditEvent] = (),
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None:
        """Durable before it returns; concurrent callers share a transaction (group commit)."""
        self._group_commit.submit(Pending(record, tuple(events), tuple(issuer_serials)))

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
        with self.transaction() as conn:
            for pending in group:
                if pending.prepare is not None:
                    pending.prepare(conn)
            rows = [_certificate_row(p.record) for p in group]
            conn.execute(_INSERT_CERTIFICATE, rows[0] if len(rows) == 1 else rows)
            for serial_set in serial_sets:
                _refuse_if_revoked(conn, group[0].record.ca, serial_set)
            ledger.append(conn, [e for p in group for e in p.events], [p.record for p in group])

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
        rows = [_certificate_row(r) for r in records]
        with self.transaction() as conn:
            conn.execute(_INSERT_CERTIFICATE, rows[0] if len(rows) == 1 else rows)
            if issuer_serials:
                _refuse_if_revoked(conn, records[0].ca, issuer_serials)
            ledger.append(conn, events, records)

    def get_certificate(self, serial_number: int) -> CertificateRecord | None:
        with self.reading() as conn:
            row = conn.execute(
                select(certificates).where(certificates.c.serial == format_serial(serial_number))
            ).first()
        return _certificate_record(row) if row else None

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
        where = and_(*conditions) if conditions else None
        with self.reading() as conn:
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
        return [_certificate_record(r) for r in rows], int(total)

    def revoke_certificate(
        self, serial_number: int, when: datetime, reason: ReasonFlags, events: Sequence[AuditEvent] = ()
    ) -> CertificateRecord:
        serial = format_serial(serial_number)
        with self.transaction() as conn:
            row = revoke_once(
                conn,
                certificates.c.serial,
                serial,
                f"certificate {serial}",
                "serial",
                revoked_at=when,
                revocation_reason=reason.value,
            )
            ledger.append(conn, events)
        return _certificate_record(row)

    def revoked_entries(self, ca: str) -> Sequence[RevokedEntry]:
        with self.reading() as conn:
            return self._revoked_entries(conn, ca)

    @staticmethod
    def _revoked_entries(conn: Connection, ca: str) -> list[RevokedEntry]:
        rows = conn.execute(
            select(certificates.c.serial, certificates.c.revoked_at, certificates.c.revocation_reason).where(
                certificates.c.ca == ca, certificates.c.revoked_at.is_not(None)
            )
        ).all()
        return [RevokedEntry(int(s, 16), when, _REASONS[r]) for s, when, r in rows]

    def certificate_status(self, ca: str, serial_number: int) -> tuple[bool, RevokedEntry | None]:
        with self.reading() as conn:
            row = conn.execute(
                _CERTIFICATE_STATUS, {"serial": format_serial(serial_number), "ca": ca}
            ).first()
        if row is None:
            return False, None
        if row.revoked_at is None:
            return True, None
        return True, RevokedEntry(serial_number, row.revoked_at, _REASONS[row.revocation_reason])

    # --- CRLs ----------------------------------------------------------------------------------

    def save_crl(self, ca: str, build: CrlBuilder) -> CrlRecord:
        with self.transaction() as conn:
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
            record, events = build(int(number), self._revoked_entries(conn, ca))
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
        with self.reading() as conn:
            row = conn.execute(select(crls).where(crls.c.ca == ca)).first()
        if row is None:
            return None
        return CrlRecord(ca, int(row.crl_number), row.this_update, row.next_update, bytes(row.der))

    # --- API tokens ----------------------------------------------------------------------------

    def add_token(self, token: TokenRecord, events: Sequence[AuditEvent] = ()) -> None:
        with self.transaction() as conn:
            ledger.append(conn, events)
            conn.execute(
                insert(api_tokens).values(
                    token_id=token.token_id,
                    name=token.name,
                    secret_hash=token.secret_hash,
                    created_at=token.created_at,
                    revoked_at=token.revoked_at,
                )
            )

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self.reading() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.token_id == token_id)).first()
        return _token_record(row) if row is not None else None

    def list_tokens(self) -> Sequence[TokenRecord]:
        with self.reading() as conn:
            rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)).all()
        return [_token_record(r) for r in rows]

    def revoke_token(self, token_id: str, when: datetime, events: Sequence[AuditEvent] = ()) -> TokenRecord:
        with self.transaction() as conn:
            row = revoke_once(
                conn, api_tokens.c.token_id, token_id, f"API token {token_id}", "token", revoked_at=when
            )
            ledger.append(conn, events)
        return _token_record(row)

    # --- owners and enrollment tokens ----------------------------------------------------------

    def add_owner(self, owner: OwnerRecord, events: Sequence[AuditEvent] = ()) -> None:
        with self.transaction() as conn:
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
        with self.reading() as conn:
            row = conn.execute(_OWNER, {"wanted_owner": name}).first()
        return _owner_record(row) if row else None

    def list_owners(self) -> Sequence[OwnerRecord]:
        with self.reading() as conn:
            rows = conn.execute(select(owners).order_by(owners.c.name)).all()
        return [_owner_record(r) for r in rows]

    def add_enrollment_token(self, token: EnrollmentTokenRecord, events: Sequence[AuditEvent] = ()) -> None:
        with self.transaction() as conn:
            conn.execute(
                insert(enrollment_tokens).values(
                    token_id=token.token_id,
                    owner=token.owner,
                    secret_hash=token.secret_hash,
                    profile=token.profile,
                    device_id_pattern=token.device_id_pattern,
                    uses_allowed=token.uses_allowed,
                    uses=token.uses,
                    expires_at=token.expires_at,
                    created_at=token.created_at,
                    revoked_at=token.revoked_at,
                    kind=token.kind,
                )
            )
            ledger.append(conn, events)

    def get_enrollment_token(self, token_id: str) -> EnrollmentTokenRecord | None:
        with self.reading() as conn:
            row = conn.execute(_ENROLLMENT_TOKEN, {"wanted_token": token_id}).first()
        return _enrollment_token(row) if row else None

    def list_enrollment_tokens(self, owner: str | None = None) -> Sequence[EnrollmentTokenRecord]:
        stmt = select(enrollment_tokens).order_by(enrollment_tokens.c.created_at)
        if owner is not None:
            stmt = stmt.where(enrollment_tokens.c.owner == owner)
        with self.reading() as conn:
            return [_enrollment_token(r) for r in conn.execute(stmt).all()]

    def revoke_enrollment_token(
        self, token_id: str, when: datetime, events: Sequence[AuditEvent] = ()
    ) -> EnrollmentTokenRecord:
        with self.transaction() as conn:
            label = f"enrollment token {token_id}"
            row = revoke_once(conn, enrollment_tokens.c.token_id, token_id, label, "token", revoked_at=when)
            ledger.append(conn, events)
        return _enrollment_token(row)

    def use_enrollment_token(self, token_id: str, now: datetime) -> bool:
        """Spend one use, atomically: False when the token is revoked, expired or used up."""
        with self.transaction() as conn:
            changed = conn.execute(_SPEND_TOKEN, {"spent_token": token_id, "spent_at": now}).rowcount
        return bool(changed == 1)

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
        with self.transaction() as conn:
            if values:
                conn.execute(update(owners).where(owners.c.name == name).values(**values))
            row = conn.execute(_OWNER, {"wanted_owner": name}).first()
            if row is None:
                raise NotFoundError(f"owner '{name}' not found", rule="owner")
            ledger.append(conn, events)
        return _owner_record(row)

    # --- devices -------------------------------------------------------------------------------

    def enroll_device(
        self,
        record: CertificateRecord,
        enrollment: DeviceEnrollment,
        events: Sequence[AuditEvent],
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None:
        """Store a device's new certificate with its registry update and token use, all or nothing;
        concurrent enrollments share a commit (group commit) like plain issuance."""

        def prepare(conn: Connection) -> None:
            _prepare_enrollment(conn, enrollment, record.serial)

        self._group_commit.submit(Pending(record, tuple(events), tuple(issuer_serials), prepare))

    def add_devices(
        self,
        records: Sequence[CertificateRecord],
        enrollments: Sequence[DeviceEnrollment],
        events: Sequence[AuditEvent],
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None:
        """Register a batch of devices with their certificates in one transaction (factory lots)."""
        with self.transaction() as conn:
            for record, enrollment in zip(records, enrollments, strict=True):
                _prepare_enrollment(conn, enrollment, record.serial)
            conn.execute(_INSERT_CERTIFICATE, [_certificate_row(r) for r in records])
            if issuer_serials and records:
                _refuse_if_revoked(conn, records[0].ca, issuer_serials)
            ledger.append(conn, events, records)

    def get_device(self, device_id: str) -> DeviceRecord | None:
        with self.reading() as conn:
            row = conn.execute(_DEVICE, {"wanted_device": device_id}).first()
        return _device_record(row) if row else None

    def list_devices(
        self, *, owner: str | None, status: DeviceStatus | None, limit: int, offset: int
    ) -> tuple[Sequence[DeviceRecord], int]:
        conditions = []
        if owner is not None:
            conditions.append(devices.c.owner == owner)
        if status is not None:
            conditions.append(devices.c.status == status.value)
        stmt = select(devices).where(*conditions).order_by(devices.c.device_id).limit(limit).offset(offset)
        count = select(func.count()).select_from(devices).where(*conditions)
        with self.reading() as conn:
            rows = conn.execute(stmt).all()
            total = conn.execute(count).scalar_one()
        return [_device_record(r) for r in rows], int(total)

    def device_certificates(self, device_id: str) -> Sequence[CertificateRecord]:
        """Every certificate the device was ever issued, newest first."""
        with self.reading() as conn:
            rows = conn.execute(
                select(certificates)
                .where(certificates.c.device_id == device_id)
                .order_by(certificates.c.not_valid_before.desc(), certificates.c.created_at.desc())
            ).all()
        return [_certificate_record(r) for r in rows]

    def set_device_status(
        self, device_id: str, status: DeviceStatus, events: Sequence[AuditEvent] = ()
    ) -> DeviceRecord:
        """Disable or enable; a revoked device stays revoked."""
        with self.transaction() as conn:
            row = conn.execute(_DEVICE, {"wanted_device": device_id}).first()
            if row is None:
                raise NotFoundError(f"device '{device_id}' not found", rule="device")
            if row.status == DeviceStatus.REVOKED.value:
                raise ConflictError(f"device '{device_id}' is revoked for good", rule="device-revoked")
            conn.execute(update(devices).where(devices.c.device_id == device_id).values(status=status.value))
            ledger.append(conn, events)
            row = conn.execute(_DEVICE, {"wanted_device": device_id}).one()
        return _device_record(row)

    def revoke_device(
        self,
        device_id: str,
        when: datetime,
        reason: ReasonFlags,
        event_for: Callable[[CertificateRecord | None], AuditEvent],
    ) -> list[CertificateRecord]:
        """Mark the device revoked and revoke every certificate it still holds, in one transaction.

        ``event_for(None)`` is the device's event, ``event_for(certificate)`` each certificate's.
        Returns the certificates revoked now (so their CAs' CRLs can be republished)."""
        with self.transaction() as conn:
            changed = conn.execute(
                update(devices)
                .where(devices.c.device_id == device_id, devices.c.status != DeviceStatus.REVOKED.value)
                .values(status=DeviceStatus.REVOKED.value)
            ).rowcount
            if changed != 1:
                exists = conn.execute(select(devices.c.status).where(devices.c.device_id == device_id))
                if exists.first() is None:
                    raise NotFoundError(f"device '{device_id}' not found", rule="device")
                raise ConflictError(f"device '{device_id}' is already revoked", rule="already-revoked")
            holding = select(certificates).where(
                certificates.c.device_id == device_id, certificates.c.revoked_at.is_(None)
            )
            rows = conn.execute(holding).all()
            conn.execute(
                update(certificates)
                .where(certificates.c.device_id == device_id, certificates.c.revoked_at.is_(None))
                .values(revoked_at=when, revocation_reason=reason.value)
            )
            revoked = [_certificate_record(r) for r in rows]
            ledger.append(conn, [event_for(None), *(event_for(r) for r in revoked)])
        return revoked

    def touch_device(self, device_id: str, when: datetime, *, attested: bool = False) -> None:
        values: dict[str, Any] = {"last_seen": when}
        if attested:
            values["last_attested_at"] = when
        with self.transaction() as conn:
            conn.execute(update(devices).where(devices.c.device_id == device_id).values(**values))

    # --- attestation challenges ----------------------------------------------------------------

    def add_challenge(self, challenge: ChallengeRecord) -> None:
        with self.transaction() as conn:
            conn.execute(
                insert(device_challenges).values(
                    challenge_id=challenge.challenge_id,
                    device_id=challenge.device_id,
                    purpose=challenge.purpose,
                    nonce=challenge.nonce,
                    created_at=challenge.created_at,
                    expires_at=challenge.expires_at,
                )
            )

    def use_challenge(self, challenge_id: str, device_id: str, now: datetime) -> ChallengeRecord | None:
        """Spend a challenge, atomically: None when it is unknown, another device's, used or expired."""
        with self.transaction() as conn:
            changed = conn.execute(
                update(device_challenges)
                .where(
                    device_challenges.c.challenge_id == challenge_id,
                    device_challenges.c.device_id == device_id,
                    device_challenges.c.used_at.is_(None),
                    device_challenges.c.expires_at > now,
                )
                .values(used_at=now)
            ).rowcount
            if changed != 1:
                return None
            row = conn.execute(
                select(device_challenges).where(device_challenges.c.challenge_id == challenge_id)
            ).one()
        return _challenge_record(row)

    def purge_challenges(self, before: datetime) -> int:
        with self.transaction() as conn:
            return int(
                conn.execute(
                    delete(device_challenges).where(device_challenges.c.expires_at < before)
                ).rowcount
            )

    # --- audit trail ---------------------------------------------------------------------------

    def append_events(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """Record events that accompany no other write (refusals, authentication failures)."""
        with self.transaction() as conn:
            return ledger.append(conn, events)

    def audit_head(self) -> tuple[int, bytes]:
        with self.reading() as conn:
            row = conn.execute(select(ledger_state.c.audit_sequence, ledger_state.c.audit_hash)).one()
        return int(row.audit_sequence), bytes(row.audit_hash)

    def list_audit(self, query: AuditFilter, *, limit: int, offset: int) -> tuple[Sequence[AuditRecord], int]:
        conditions = []
        if query.since is not None:
            conditions.append(audit_events.c.time >= query.since)
        if query.until is not None:
            conditions.append(audit_events.c.time < query.until)
        if query.type is not None:
            conditions.append(audit_events.c.type == query.type)
        if query.subject is not None:
            conditions.append(audit_events.c.subject == query.subject)
        if query.outcome is not None:
            conditions.append(audit_events.c.outcome == query.outcome)
        if query.after_sequence is not None:
            conditions.append(audit_events.c.sequence > query.after_sequence)
        stmt = select(audit_events)
        count = select(func.count()).select_from(audit_events)
        if conditions:
            stmt = stmt.where(and_(*conditions))
            count = count.where(and_(*conditions))
        with self.reading() as conn:
            rows = conn.execute(stmt.order_by(audit_events.c.sequence).limit(limit).offset(offset)).all()
            total = conn.execute(count).scalar_one()
        return [_audit_record(r) for r in rows], int(total)

    def iter_audit(self, *, batch: int = 5000) -> Iterator[AuditRecord]:
        """Every record in sequence order, read in batches (for verification and export)."""
        after = 0
        while True:
            with self.reading() as conn:
                rows = conn.execute(
                    select(audit_events)
                    .where(audit_events.c.sequence > after)
                    .order_by(audit_events.c.sequence)
                    .limit(batch)
                ).all()
            if not rows:
                return
            for row in rows:
                yield _audit_record(row)
            after = int(rows[-1].sequence)

    def add_audit_head(self, head: SignedHead) -> None:
        with self.transaction() as conn:
            conn.execute(
                insert(audit_heads).values(
                    sequence=head.sequence,
                    hash=head.hash,
                    signed_at=head.signed_at,
                    signature=head.signature,
                    signer_serial=format_serial(head.signer_serial),
                )
            )

    def audit_heads(self) -> Sequence[SignedHead]:
        with self.reading() as conn:
            rows = conn.execute(select(audit_heads).order_by(audit_heads.c.id)).all()
        return [_signed_head(r) for r in rows]

    def latest_audit_head(self) -> SignedHead | None:
        """The most recent signed head: one row, however long the service has run."""
        with self.reading() as conn:
            row = conn.execute(select(audit_heads).order_by(audit_heads.c.id.desc()).limit(1)).first()
        return _signed_head(row) if row is not None else None

    def forward_cursor(self, name: str) -> int:
        """The last sequence forwarder ``name`` delivered (0 before the first)."""
        with self.reading() as conn:
            value = conn.execute(
                select(forward_cursors.c.sequence).where(forward_cursors.c.name == name)
            ).scalar_one_or_none()
        return int(value) if value is not None else 0

    def set_forward_cursor(self, name: str, sequence: int, when: datetime) -> None:
        with self.transaction() as conn:
            changed = conn.execute(
                update(forward_cursors)
                .where(forward_cursors.c.name == name)
                .values(sequence=sequence, updated_at=when)
            ).rowcount
            if not changed:
                conn.execute(insert(forward_cursors).values(name=name, sequence=sequence, updated_at=when))

    # --- service signers -----------------------------------------------------------------------

    def add_signer(
        self, name: str, key_ref: str, certificate: CertificateRecord, events: Sequence[AuditEvent]
    ) -> None:
        with self.transaction() as conn:
            conn.execute(insert(certificates).values(**_certificate_row(certificate)))
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
        with self.transaction() as conn:
            conn.execute(insert(certificates).values(**_certificate_row(certificate)))
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
        with self.reading() as conn:
            row = conn.execute(
                select(signers.c.key_ref, certificates.c.der)
                .join(certificates, certificates.c.serial == signers.c.serial)
                .where(signers.c.name == name)
            ).first()
        return (row.key_ref, bytes(row.der)) if row else None

    # --- transparency log ----------------------------------------------------------------------

    def log_leaves(self, start: int = 0) -> list[bytes]:
        """Leaf hashes from index ``start`` on, in order; refuses a log with gaps."""
        stmt = (
            select(log_entries.c.leaf_index, log_entries.c.leaf_hash)
            .where(log_entries.c.leaf_index >= start)
            .order_by(log_entries.c.leaf_index)
        )
        with self.reading() as conn:
            rows = conn.execute(stmt).all()
        for offset, (index, _) in enumerate(rows):
            if index != start + offset:
                raise IntegrityError(f"transparency log entry {start + offset} is missing", rule="log")
        return [bytes(h) for _, h in rows]

    def log_size(self) -> int:
        with self.reading() as conn:
            return int(conn.execute(select(ledger_state.c.log_size)).scalar_one())

    def log_index(self, serial_number: int) -> int | None:
        with self.reading() as conn:
            index = conn.execute(
                select(log_entries.c.leaf_index).where(log_entries.c.serial == format_serial(serial_number))
            ).scalar_one_or_none()
        return int(index) if index is not None else None

    def add_tree_head(self, head: TreeHead) -> None:
        with self.transaction() as conn:
            if conn.execute(
                select(log_heads.c.tree_size).where(log_heads.c.tree_size == head.tree_size)
            ).first():
                return
            conn.execute(
                insert(log_heads).values(
                    tree_size=head.tree_size,
                    timestamp=head.timestamp,
                    root_hash=head.root_hash,
                    signature=head.signature,
                    signer_serial=format_serial(head.signer_serial),
                )
            )

    def tree_head(self, tree_size: int | None = None) -> TreeHead | None:
        """The signed head of ``tree_size`` leaves, or the largest one when None."""
        stmt = select(log_heads)
        stmt = (
            stmt.where(log_heads.c.tree_size == tree_size)
            if tree_size is not None
            else stmt.order_by(log_heads.c.tree_size.desc())
        )
        with self.reading() as conn:
            row = conn.execute(stmt.limit(1)).first()
        if row is None:
            return None
        return TreeHead(
            int(row.tree_size),
            row.timestamp,
            bytes(row.root_hash),
            bytes(row.signature),
            int(row.signer_serial, 16),
        )

    # --- statistics (metrics) ------------------------------------------------------------------

    def certificate_counts(self) -> list[tuple[str, str, int, int]]:
        """(ca, profile, issued, revoked) for every CA and profile."""
        revoked = func.count(certificates.c.revoked_at)
        stmt = select(certificates.c.ca, certificates.c.profile, func.count(), revoked).group_by(
            certificates.c.ca, certificates.c.profile
        )
        with self.reading() as conn:
            return [(ca, profile, int(n), int(r)) for ca, profile, n, r in conn.execute(stmt)]

    def expiring_counts(self, now: datetime, until: datetime) -> dict[str, int]:
        """Unrevoked certificates per CA that are valid now and expire before ``until``."""
        stmt = (
            select(certificates.c.ca, func.count())
            .where(
                certificates.c.revoked_at.is_(None),
                certificates.c.not_valid_after >= now,
                certificates.c.not_valid_after < until,
            )
            .group_by(certificates.c.ca)
        )
        with self.reading() as conn:
            return {ca: int(n) for ca, n in conn.execute(stmt)}

    def event_counts(self) -> list[tuple[str, str, int]]:
        """(type, outcome, count) over the whole audit trail."""
        stmt = select(audit_events.c.type, audit_events.c.outcome, func.count()).group_by(
            audit_events.c.type, audit_events.c.outcome
        )
        with self.reading() as conn:
            return [(t, o, int(n)) for t, o, n in conn.execute(stmt)]


def _enrollment_token(row: Row[Any]) -> EnrollmentTokenRecord:
    return EnrollmentTokenRecord(
        token_id=row.token_id,
        owner=row.owner,
        secret_hash=bytes(row.secret_hash),
        profile=row.profile,
        device_id_pattern=row.device_id_pattern,
        uses_allowed=int(row.uses_allowed),
        uses=int(row.uses),
        expires_at=row.expires_at,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        kind=row.kind,
    )


def _owner_record(row: Row[Any]) -> OwnerRecord:
    return OwnerRecord(
        name=row.name,
        ca=row.ca,
        created_at=row.created_at,
        allow_server_keygen=bool(row.allow_server_keygen),
        renewal_grace_days=int(row.renewal_grace_days),
    )


def _device_record(row: Row[Any]) -> DeviceRecord:
    return DeviceRecord(
        device_id=row.device_id,
        owner=row.owner,
        status=DeviceStatus(row.status),
        profile=row.profile,
        current_serial=row.current_serial,
        enrollment_token_id=row.enrollment_token_id,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        last_attested_at=row.last_attested_at,
    )


def _challenge_record(row: Row[Any]) -> ChallengeRecord:
    return ChallengeRecord(
        challenge_id=row.challenge_id,
        device_id=row.device_id,
        purpose=row.purpose,
        nonce=bytes(row.nonce),
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


def _prepare_enrollment(conn: Connection, enrollment: DeviceEnrollment, serial: str) -> None:
    """The registry side of an enrollment, inside the certificate's transaction: spend the token,
    check the device may enroll, and make the new certificate its current one."""
    if enrollment.token_id is not None:
        spent = conn.execute(
            _SPEND_TOKEN, {"spent_token": enrollment.token_id, "spent_at": enrollment.now}
        ).rowcount
        if spent != 1:
            raise AuthenticationError(
                "invalid, expired, used-up or revoked enrollment token", rule="enroll-token"
            )
    row = conn.execute(_DEVICE, {"wanted_device": enrollment.device_id}).first()
    if row is None:
        if enrollment.existing_only:
            raise NotFoundError(f"device '{enrollment.device_id}' is not registered", rule="device")
        conn.execute(
            _INSERT_DEVICE,
            {
                "device_id": enrollment.device_id,
                "owner": enrollment.owner,
                "status": DeviceStatus.ACTIVE.value,
                "profile": enrollment.profile,
                "current_serial": serial,
                "enrollment_token_id": enrollment.token_id,
                "first_seen": enrollment.now,
                "last_seen": enrollment.now,
            },
        )
        return
    if row.owner != enrollment.owner:
        raise ConflictError(
            f"device id '{enrollment.device_id}' is registered to another owner", rule="device-owner"
        )
    if row.status != DeviceStatus.ACTIVE.value:
        raise PolicyViolationError(
            f"device '{enrollment.device_id}' is {row.status} and cannot enroll", rule="device-status"
        )
    if enrollment.new_device_only:
        holding = conn.execute(
            _HOLDING, {"wanted_device": enrollment.device_id, "at": enrollment.now}
        ).scalar_one()
        if holding:
            raise ConflictError(
                f"device '{enrollment.device_id}' is already enrolled with a valid certificate; it renews"
                " with that certificate (simplereenroll), or revoke it before enrolling the device anew",
                rule="device-enrolled",
            )
    values: dict[str, Any] = {"current_serial": serial, "last_seen": enrollment.now}
    if enrollment.token_id is not None:
        values["enrollment_token_id"] = enrollment.token_id
    conn.execute(update(devices).where(devices.c.device_id == enrollment.device_id).values(**values))


def _signed_head(row: Row[Any]) -> SignedHead:
    return SignedHead(
        int(row.sequence), bytes(row.hash), row.signed_at, bytes(row.signature), int(row.signer_serial, 16)
    )


def _token_record(row: Row[Any]) -> TokenRecord:
    return TokenRecord(row.token_id, row.name, bytes(row.secret_hash), row.created_at, row.revoked_at)


def _audit_record(row: Row[Any]) -> AuditRecord:
    try:
        return _parse_audit_row(row)
    except (ValueError, TypeError, KeyError) as exc:
        sequence = int(row.sequence)
        message = f"audit record {sequence} is unreadable (altered?)"
        raise IntegrityError(message, rule="audit-unreadable", sequence=sequence) from exc


def _parse_audit_row(row: Row[Any]) -> AuditRecord:
    event = AuditEvent(
        time=row.time,
        host=row.host,
        component=row.component,
        type=EventType(row.type),
        subject=row.subject,
        outcome=Outcome(row.outcome),
        reason=row.reason,
        source=row.source,
        request_id=row.request_id,
        details=json.loads(row.details),
    )
    return AuditRecord(int(row.sequence), event, bytes(row.previous_hash), bytes(row.hash))
