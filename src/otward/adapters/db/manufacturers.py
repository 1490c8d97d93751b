"""Manufacturers (IDevID CAs) and owners' claims on their devices, each change with its audit events
in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Row, delete, func, insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.database import Database
from otward.adapters.db.zerotouch_schema import device_claims, manufacturers
from otward.core.audit import AuditEvent
from otward.core.idevid import ClaimRecord, FactoryIdentity, ManufacturerRecord
from otward.errors import ConflictError, NotFoundError

__all__ = ["SqlManufacturerStore"]


def _manufacturer(row: Row[Any]) -> ManufacturerRecord:
    return ManufacturerRecord(
        name=row.name,
        ca_certificates=tuple(x509.load_pem_x509_certificates(row.ca_pem.encode())),
        created_at=row.created_at,
        crl_url=row.crl_url,
        crl=bytes(row.crl_der) if row.crl_der is not None else None,
        crl_required=row.crl_url is not None or row.crl_der is not None,
    )


def _claim(row: Row[Any]) -> ClaimRecord:
    return ClaimRecord(
        manufacturer=row.manufacturer,
        serial=row.serial,
        owner=row.owner,
        claimed_at=row.claimed_at,
        model=row.model,
        public_key_sha256=row.public_key_sha256,
        profile=row.profile,
        device_id=row.device_id,
        idevid_issuer=row.idevid_issuer,
        idevid_serial=row.idevid_serial,
        idevid_fingerprint=row.idevid_fingerprint,
        enrolled_device_id=row.enrolled_device_id,
        ldevid_serial=row.ldevid_serial,
        enrolled_at=row.enrolled_at,
    )


class SqlManufacturerStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    # --- manufacturers ---------------------------------------------------------------------------

    def add_manufacturer(self, record: ManufacturerRecord, events: Sequence[AuditEvent] = ()) -> None:
        pem = "".join(c.public_bytes(Encoding.PEM).decode() for c in record.ca_certificates)
        with self._database.transaction() as conn:
            if conn.execute(select(manufacturers.c.name).where(manufacturers.c.name == record.name)).first():
                raise ConflictError(
                    f"manufacturer '{record.name}' already exists", rule="manufacturer-exists"
                )
            conn.execute(
                insert(manufacturers).values(
                    name=record.name,
                    ca_pem=pem,
                    crl_url=record.crl_url,
                    crl_der=record.crl,
                    created_at=record.created_at,
                )
            )
            ledger.append(conn, events)

    def list_manufacturers(self) -> list[ManufacturerRecord]:
        with self._database.reading() as conn:
            rows = conn.execute(select(manufacturers).order_by(manufacturers.c.name)).all()
        return [_manufacturer(r) for r in rows]

    def manufacturer_names(self) -> set[str]:
        """The registered names: a cheap look for the TLS trust refresh."""
        with self._database.reading() as conn:
            return set(conn.execute(select(manufacturers.c.name)).scalars())

    def get_manufacturer(self, name: str) -> ManufacturerRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(select(manufacturers).where(manufacturers.c.name == name)).first()
        return _manufacturer(row) if row else None

    def remove_manufacturer(self, name: str, events: Sequence[AuditEvent] = ()) -> None:
        with self._database.transaction() as conn:
            claims = conn.execute(
                select(func.count()).select_from(device_claims).where(device_claims.c.manufacturer == name)
            ).scalar_one()
            if claims:
                raise ConflictError(
                    f"manufacturer '{name}' still has {claims} claimed devices; release them first",
                    rule="manufacturer-claims",
                )
            if conn.execute(delete(manufacturers).where(manufacturers.c.name == name)).rowcount != 1:
                raise NotFoundError(f"manufacturer '{name}' not found", rule="manufacturer")
            ledger.append(conn, events)

    def set_crl(self, name: str, crl: bytes, events: Sequence[AuditEvent] = ()) -> None:
        with self._database.transaction() as conn:
            changed = conn.execute(
                update(manufacturers).where(manufacturers.c.name == name).values(crl_der=crl)
            )
            if changed.rowcount != 1:
                raise NotFoundError(f"manufacturer '{name}' not found", rule="manufacturer")
            ledger.append(conn, events)

    # --- claims ----------------------------------------------------------------------------------

    def claim(self, claims: Sequence[ClaimRecord], events: Sequence[AuditEvent] = ()) -> None:
        """Record every claim or none: a unit claimed by another owner refuses the whole batch; a unit
        the same owner claimed before takes the new details unless it already enrolled."""
        with self._database.transaction() as conn:
            for claim in claims:
                key = (device_claims.c.manufacturer == claim.manufacturer) & (
                    device_claims.c.serial == claim.serial
                )
                row = conn.execute(select(device_claims).where(key).with_for_update()).first()
                values = {
                    "owner": claim.owner,
                    "model": claim.model,
                    "public_key_sha256": claim.public_key_sha256,
                    "profile": claim.profile,
                    "device_id": claim.device_id,
                    "claimed_at": claim.claimed_at,
                }
                if row is None:
                    conn.execute(
                        insert(device_claims).values(
                            manufacturer=claim.manufacturer, serial=claim.serial, **values
                        )
                    )
                elif row.owner != claim.owner:
                    raise ConflictError(
                        f"{claim.manufacturer} serial '{claim.serial}' is claimed by another owner; it must"
                        " release it first",
                        rule="claim-owned",
                    )
                elif row.enrolled_at is not None:
                    raise ConflictError(
                        f"{claim.manufacturer} serial '{claim.serial}' already enrolled as device"
                        f" '{row.enrolled_device_id}'; its claim cannot change",
                        rule="claim-enrolled",
                    )
                else:
                    conn.execute(update(device_claims).where(key).values(**values))
            ledger.append(conn, events)

    def release(
        self, owner: str, manufacturer: str, serials: Sequence[str], events: Sequence[AuditEvent] = ()
    ) -> None:
        """Delete the owner's claims on ``serials``, all or none."""
        with self._database.transaction() as conn:
            for serial in serials:
                key = (device_claims.c.manufacturer == manufacturer) & (device_claims.c.serial == serial)
                row = conn.execute(select(device_claims.c.owner).where(key).with_for_update()).first()
                if row is None or row.owner != owner:
                    raise NotFoundError(
                        f"owner '{owner}' has no claim on {manufacturer} serial '{serial}'", rule="claim"
                    )
                conn.execute(delete(device_claims).where(key))
            ledger.append(conn, events)

    def get_claim(self, manufacturer: str, serial: str) -> ClaimRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(
                select(device_claims).where(
                    (device_claims.c.manufacturer == manufacturer) & (device_claims.c.serial == serial)
                )
            ).first()
        return _claim(row) if row else None

    def list_claims(self, *, owner: str | None = None, manufacturer: str | None = None) -> list[ClaimRecord]:
        query = select(device_claims).order_by(device_claims.c.manufacturer, device_claims.c.serial)
        if owner is not None:
            query = query.where(device_claims.c.owner == owner)
        if manufacturer is not None:
            query = query.where(device_claims.c.manufacturer == manufacturer)
        with self._database.reading() as conn:
            return [_claim(r) for r in conn.execute(query).all()]

    def reserve_enrollment(self, manufacturer: str, serial: str, owner: str, at: datetime) -> bool:
        """Mark the claim as enrolling, once: False when it is enrolled (or enrolling) already, so two
        simultaneous first enrollments of one unit cannot both issue."""
        with self._database.transaction() as conn:
            changed = conn.execute(
                update(device_claims)
                .where(
                    (device_claims.c.manufacturer == manufacturer)
                    & (device_claims.c.serial == serial)
                    & (device_claims.c.owner == owner)
                    & device_claims.c.enrolled_at.is_(None)
                )
                .values(enrolled_at=at)
            )
            return changed.rowcount == 1

    def cancel_enrollment(self, manufacturer: str, serial: str) -> None:
        """Undo :meth:`reserve_enrollment` after an enrollment that issued nothing."""
        with self._database.transaction() as conn:
            conn.execute(
                update(device_claims)
                .where(
                    (device_claims.c.manufacturer == manufacturer)
                    & (device_claims.c.serial == serial)
                    & device_claims.c.ldevid_serial.is_(None)
                )
                .values(enrolled_at=None)
            )

    def record_enrollment(
        self, identity: FactoryIdentity, owner: str, device_id: str, ldevid_serial: str, at: datetime
    ) -> None:
        """The IDevID that enrolled the unit and the LDevID it got, on the claim."""
        with self._database.transaction() as conn:
            conn.execute(
                update(device_claims)
                .where(
                    (device_claims.c.manufacturer == identity.manufacturer)
                    & (device_claims.c.serial == identity.serial)
                    & (device_claims.c.owner == owner)
                )
                .values(
                    idevid_issuer=identity.issuer,
                    idevid_serial=identity.certificate_serial,
                    idevid_fingerprint=identity.fingerprint,
                    enrolled_device_id=device_id,
                    ldevid_serial=ldevid_serial,
                    enrolled_at=at,
                )
            )
