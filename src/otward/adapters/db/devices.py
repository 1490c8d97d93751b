"""The device registry: enrollment (with its certificate, in one transaction), status,
certificate history and attestation challenges."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509 import ReasonFlags
from sqlalchemy import ColumnElement, Connection, Row, bindparam, delete, func, insert, or_, select, update

from otward.adapters.db import ledger
from otward.adapters.db.certificates import (
    SqlCertificateStore,
    certificate_record,
    insert_certificates,
    refuse_if_revoked,
)
from otward.adapters.db.database import Database
from otward.adapters.db.enrollment_tokens import spend_token
from otward.adapters.db.group_commit import Pending
from otward.adapters.db.schema import certificates, device_challenges, devices
from otward.core.audit import AuditEvent
from otward.core.keys import spki_pin
from otward.core.records import (
    CertificateRecord,
    ChallengeRecord,
    DeviceEnrollment,
    DeviceListing,
    DeviceRecord,
    DeviceStatus,
    EnrollmentRetry,
)
from otward.errors import AuthenticationError, ConflictError, NotFoundError, PolicyViolationError

__all__ = ["SqlDeviceStore"]

# The enrollment path's statements, built once (a statement built per call costs its cache key).
_DEVICE = select(devices).where(devices.c.device_id == bindparam("wanted_device"))
# FOR UPDATE (PostgreSQL; SQLite's writer lock already serialises): two enrollments of one device in
# different transactions queue here, and the second then sees what the first committed.
_LOCK_DEVICE = _DEVICE.with_for_update()
_CURRENT_VALID = select(func.count()).where(
    certificates.c.serial == bindparam("current"),
    certificates.c.revoked_at.is_(None),
    certificates.c.not_valid_after > bindparam("at"),
)
_INSERT_DEVICE = insert(devices)


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
        superseded_serial=row.superseded_serial,
        superseded_at=row.superseded_at,
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


def _is_valid(conn: Connection, serial: str | None, now: datetime) -> bool:
    return serial is not None and bool(
        conn.execute(_CURRENT_VALID, {"current": serial, "at": now}).scalar_one()
    )


def _revoked(conn: Connection, serial: str | None) -> bool:
    """Whether ``serial`` is revoked (or unknown), read in this transaction."""
    found = conn.execute(select(certificates.c.revoked_at).where(certificates.c.serial == serial)).first()
    return found is None or found.revoked_at is not None


def _revoke_superseded(conn: Connection, serials: Sequence[str], when: datetime) -> list[CertificateRecord]:
    """Revoke (reason superseded) those of ``serials`` not yet revoked; returns them as revoked."""
    if not serials:
        return []
    unrevoked = certificates.c.serial.in_(serials) & certificates.c.revoked_at.is_(None)
    rows = conn.execute(select(certificates).where(unrevoked)).all()
    conn.execute(
        update(certificates)
        .where(unrevoked)
        .values(revoked_at=when, revocation_reason=ReasonFlags.superseded.value)
    )
    superseded = ReasonFlags.superseded
    return [replace(certificate_record(r), revoked_at=when, revocation_reason=superseded) for r in rows]


def _retry_candidate(
    conn: Connection, retry: EnrollmentRetry, row: Row[Any] | None
) -> CertificateRecord | None:
    """The device's current certificate if ``retry`` (``row``: the device, read in this transaction)
    repeats the enrollment that issued it (see :class:`EnrollmentRetry`), else None."""
    renewal = retry.renewed_from is not None
    if (
        row is None
        or row.status != DeviceStatus.ACTIVE.value
        or row.current_serial is None
        or (renewal and row.superseded_serial != retry.renewed_from)
        or (not renewal and row.enrollment_token_id != retry.token_id)
        or (not renewal and row.enrollment_key_pin != retry.request_key_pin)
        or (retry.serial is not None and row.current_serial != retry.serial)
    ):
        return None
    found = conn.execute(select(certificates).where(certificates.c.serial == row.current_serial)).first()
    if found is None:
        return None
    record = certificate_record(found)
    if (
        record.revoked_at is not None
        or (not renewal and record.created_at < retry.since)
        or (renewal and _revoked(conn, retry.renewed_from))
        or (row.last_attested_at is not None and row.last_attested_at >= record.created_at)
    ):
        return None
    made_by_server = (
        spki_pin(x509.load_der_x509_certificate(record.der).public_key()) != retry.request_key_pin
    )
    return record if made_by_server == retry.server_keygen else None


def _prepare_enrollment(conn: Connection, enrollment: DeviceEnrollment, serial: str) -> list[AuditEvent]:
    """The registry side of an enrollment, inside the certificate's transaction: spend the token, check
    the device may enroll, make the new certificate its current one, and retire the certificate
    superseded before (returns that revocation's events).

    Runs after the group's certificates are inserted, so that of two enrollments of one new device in
    one group commit the second sees the first's valid certificate and is refused."""
    if enrollment.token_id is not None and not spend_token(conn, enrollment.token_id, enrollment.now):
        raise AuthenticationError(
            "invalid, expired, used-up or revoked enrollment token", rule="enroll-token"
        )
    row = conn.execute(_LOCK_DEVICE, {"wanted_device": enrollment.device_id}).first()
    if enrollment.retry_of is not None:
        return _repeat_server_keygen(conn, enrollment, enrollment.retry_of, row, serial)
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
                "enrollment_key_pin": enrollment.request_key_pin,
            },
        )
        return []
    if row.owner != enrollment.owner:
        raise ConflictError(
            f"device id '{enrollment.device_id}' is registered to another owner", rule="device-owner"
        )
    if row.status != DeviceStatus.ACTIVE.value:
        raise PolicyViolationError(
            f"device '{enrollment.device_id}' is {row.status} and cannot enroll", rule="device-status"
        )
    if enrollment.renewing_serial is not None and row.current_serial != enrollment.renewing_serial:
        raise PolicyViolationError(
            f"certificate {enrollment.renewing_serial} is no longer the current certificate of device"
            f" '{enrollment.device_id}'; only the current certificate renews",
            rule="est-superseded",
        )
    current_valid = _is_valid(conn, row.current_serial, enrollment.now)
    if enrollment.new_device_only:
        if current_valid:
            raise ConflictError(
                f"device '{enrollment.device_id}' is already enrolled with a valid certificate; it renews"
                " with that certificate (simplereenroll), or revoke it before enrolling the device anew",
                rule="device-enrolled",
            )
    # The certificate replaced now stays usable for the overlap (until the device uses its new one);
    # one superseded earlier and still pending is retired for good now.
    retired = _revoke_superseded(
        conn, [row.superseded_serial] if row.superseded_serial else [], enrollment.now
    )
    values: dict[str, Any] = {
        "current_serial": serial,
        "last_seen": enrollment.now,
        "superseded_serial": row.current_serial if current_valid else None,
        "superseded_at": enrollment.now if current_valid else None,
        "enrollment_key_pin": enrollment.request_key_pin,  # a renewal is repeated by no token
    }
    if enrollment.token_id is not None:
        values["enrollment_token_id"] = enrollment.token_id
    conn.execute(update(devices).where(devices.c.device_id == enrollment.device_id).values(**values))
    return [enrollment.superseded_event(r.serial) for r in retired]


def _repeat_server_keygen(
    conn: Connection, enrollment: DeviceEnrollment, retry: EnrollmentRetry, row: Row[Any] | None, serial: str
) -> list[AuditEvent]:
    """A server-keygen enrollment made again: the certificate whose key the client lost is revoked
    (superseded) now, in the transaction that makes the new one current; no token use is spent."""
    lost = _retry_candidate(conn, retry, row)
    if lost is None:
        raise ConflictError(
            f"the enrollment of device '{enrollment.device_id}' can no longer be repeated (its certificate"
            " was used, renewed, revoked or replaced, or the retry window is over)",
            rule="enroll-retry",
        )
    revoked = _revoke_superseded(conn, [lost.serial], enrollment.now)
    conn.execute(
        update(devices)
        .where(devices.c.device_id == enrollment.device_id)
        .values(current_serial=serial, last_seen=enrollment.now)
    )
    return [enrollment.superseded_event(r.serial) for r in revoked]


class SqlDeviceStore:
    """Implements :class:`otward.core.ports.DeviceStore`; enrollments share the certificate
    store's group commit, so a device's certificate and registry update are one transaction."""

    def __init__(self, database: Database, certificates: SqlCertificateStore) -> None:
        self._database = database
        self._certificates = certificates

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

        def prepare(conn: Connection) -> list[AuditEvent]:
            return _prepare_enrollment(conn, enrollment, record.serial)

        self._certificates.submit(Pending(record, tuple(events), tuple(issuer_serials), prepare))

    def repeat_enrollment(
        self, retry: EnrollmentRetry, event_for: Callable[[CertificateRecord], AuditEvent]
    ) -> CertificateRecord | None:
        """The certificate ``retry`` asks for again, with ``event_for(it)`` recorded, or None (nothing
        recorded) when it does not match; decided with the device row locked, so a renewal, reset or
        revocation either comes first and is seen, or waits."""
        with self._database.transaction() as conn:
            row = conn.execute(_LOCK_DEVICE, {"wanted_device": retry.device_id}).first()
            record = _retry_candidate(conn, retry, row)
            if record is not None:
                ledger.append(conn, [event_for(record)])
        return record

    def enrollment_to_repeat(self, retry: EnrollmentRetry) -> CertificateRecord | None:
        """The certificate ``retry`` would repeat, as things stand (nothing is locked or written)."""
        with self._database.reading() as conn:
            row = conn.execute(_DEVICE, {"wanted_device": retry.device_id}).first()
            return _retry_candidate(conn, retry, row)

    def reset_device(
        self,
        device_id: str,
        when: datetime,
        events_for: Callable[[CertificateRecord], Sequence[AuditEvent]],
    ) -> CertificateRecord:
        """Revoke (superseded) the only certificate of a device that never used it, so that the
        device's owner can enroll it anew; ``events_for(it)`` are recorded with the change. Refused
        (ConflictError) for a device that renewed, attested, is not active, or holds no valid
        certificate."""
        with self._database.transaction() as conn:
            row = conn.execute(_LOCK_DEVICE, {"wanted_device": device_id}).first()
            if row is None:
                raise NotFoundError(f"device '{device_id}' not found", rule="device")
            if row.status != DeviceStatus.ACTIVE.value:
                raise ConflictError(
                    f"device '{device_id}' is {row.status}; only an active device is reset",
                    rule="device-reset",
                )
            held = conn.execute(select(certificates).where(certificates.c.device_id == device_id)).all()
            if len(held) != 1 or held[0].serial != row.current_serial:
                raise ConflictError(
                    f"device '{device_id}' has had {len(held)} certificates: it renewed, so its certificate"
                    " was used; revoke it instead (otward device revoke, or cert revoke)",
                    rule="device-reset",
                )
            if row.last_attested_at is not None:
                raise ConflictError(
                    f"device '{device_id}' attested with its certificate at"
                    f" {row.last_attested_at.isoformat()}; a used certificate is revoked, not reset"
                    " (otward device revoke, or cert revoke)",
                    rule="device-reset",
                )
            certificate = certificate_record(held[0])
            if certificate.status_at(when) != "valid":
                raise ConflictError(
                    f"the only certificate of device '{device_id}' is {certificate.status_at(when)} already:"
                    " a new token of its owner enrolls it as it is",
                    rule="device-reset",
                )
            revoked = _revoke_superseded(conn, [certificate.serial], when)
            conn.execute(
                update(devices).where(devices.c.device_id == device_id).values(enrollment_key_pin=None)
            )
            ledger.append(conn, [event for r in revoked for event in events_for(r)])
        return revoked[0]

    def add_devices(
        self,
        records: Sequence[CertificateRecord],
        enrollments: Sequence[DeviceEnrollment],
        events: Sequence[AuditEvent],
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None:
        """Register a batch of devices with their certificates in one transaction (factory lots)."""
        with self._database.transaction() as conn:
            insert_certificates(conn, records)
            retired = [
                event
                for record, enrollment in zip(records, enrollments, strict=True)
                for event in _prepare_enrollment(conn, enrollment, record.serial)
            ]
            if issuer_serials and records:
                refuse_if_revoked(conn, records[0].ca, issuer_serials)
            ledger.append(conn, [*events, *retired], records)

    def get_device(self, device_id: str) -> DeviceRecord | None:
        with self._database.reading() as conn:
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
        with self._database.reading() as conn:
            rows = conn.execute(stmt).all()
            total = conn.execute(count).scalar_one()
        return [_device_record(r) for r in rows], int(total)

    def find_devices(
        self,
        *,
        owners: frozenset[str] | None,
        id_contains: str | None,
        status: DeviceStatus | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[DeviceListing], int]:
        conditions: list[ColumnElement[bool]] = []
        if owners is not None:
            conditions.append(devices.c.owner.in_(sorted(owners)))
        if id_contains:
            conditions.append(devices.c.device_id.contains(id_contains, autoescape=True))
        if status is not None:
            conditions.append(devices.c.status == status.value)
        stmt = (
            select(devices, certificates.c.not_valid_after.label("current_not_valid_after"))
            .select_from(devices.outerjoin(certificates, certificates.c.serial == devices.c.current_serial))
            .where(*conditions)
            .order_by(devices.c.device_id)
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(devices).where(*conditions)
        with self._database.reading() as conn:
            rows = conn.execute(stmt).all()
            total = conn.execute(count).scalar_one()
        return [DeviceListing(_device_record(r), r.current_not_valid_after) for r in rows], int(total)

    def count_devices_by_owner(self) -> Mapping[str, int]:
        stmt = select(devices.c.owner, func.count()).group_by(devices.c.owner)
        with self._database.reading() as conn:
            return {owner: int(n) for owner, n in conn.execute(stmt).all()}

    def device_certificates(self, device_id: str) -> Sequence[CertificateRecord]:
        """Every certificate the device was ever issued, newest first."""
        with self._database.reading() as conn:
            rows = conn.execute(
                select(certificates)
                .where(certificates.c.device_id == device_id)
                .order_by(certificates.c.not_valid_before.desc(), certificates.c.created_at.desc())
            ).all()
        return [certificate_record(r) for r in rows]

    def set_device_status(
        self, device_id: str, status: DeviceStatus, events: Sequence[AuditEvent] = ()
    ) -> DeviceRecord:
        """Disable or enable; a revoked device stays revoked."""
        with self._database.transaction() as conn:
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
        with self._database.transaction() as conn:
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
            revoked = [certificate_record(r) for r in rows]
            ledger.append(conn, [event_for(None), *(event_for(r) for r in revoked)])
        return revoked

    def retire_superseded(
        self,
        due: datetime,
        when: datetime,
        event_for: Callable[[CertificateRecord], AuditEvent],
        *,
        device_id: str | None = None,
    ) -> list[CertificateRecord]:
        """Revoke (superseded) every unrevoked certificate of a device that is not its current one,
        except the one it replaced at or after ``due`` (its overlap is not over); for ``device_id``
        alone, that one too (the device has used its new certificate). Returns what was revoked."""
        over = devices.c.superseded_at < due
        if device_id is not None:
            over = or_(over, devices.c.device_id == device_id)
        stmt = (
            select(certificates.c.serial)
            .join(devices, devices.c.device_id == certificates.c.device_id)
            .where(
                certificates.c.revoked_at.is_(None),
                certificates.c.serial != devices.c.current_serial,
                or_(
                    devices.c.superseded_serial.is_(None),
                    certificates.c.serial != devices.c.superseded_serial,
                    over,
                ),
            )
        )
        if device_id is not None:
            stmt = stmt.where(devices.c.device_id == device_id)
        with self._database.transaction() as conn:
            revoked = _revoke_superseded(conn, list(conn.execute(stmt).scalars()), when)
            conn.execute(
                update(devices)
                .where(devices.c.superseded_serial.is_not(None), over)
                .values(superseded_serial=None, superseded_at=None)
            )
            ledger.append(conn, [event_for(r) for r in revoked])
        return revoked

    def touch_device(self, device_id: str, when: datetime, *, attested: bool = False) -> None:
        values: dict[str, Any] = {"last_seen": when}
        if attested:
            values["last_attested_at"] = when
        with self._database.transaction() as conn:
            conn.execute(update(devices).where(devices.c.device_id == device_id).values(**values))

    # --- attestation challenges ----------------------------------------------------------------

    def add_challenge(self, challenge: ChallengeRecord) -> None:
        with self._database.transaction() as conn:
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
        with self._database.transaction() as conn:
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
        with self._database.transaction() as conn:
            return int(
                conn.execute(
                    delete(device_challenges).where(device_challenges.c.expires_at < before)
                ).rowcount
            )
