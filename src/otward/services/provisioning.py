"""Factory pre-provisioning: device identities made before the devices ever reach a network.

The keys are made here (a factory station stands in for the device) and leave only
inside password-protected PKCS#12 files; the devices are registered to their owner
as enrolled. Certificates are issued in batches: each batch (certificates, registry
rows, audit events, log entries) is one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from otward.adapters.keys import generate_private_key
from otward.core.audit import EventType
from otward.core.keys import KeyType, signature_hash_for
from otward.core.ports import DeviceStore
from otward.core.profiles import Identity
from otward.core.records import DeviceEnrollment
from otward.errors import InvalidRequestError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.devices import superseded_event
from otward.services.enrollment import Owners
from otward.services.issuance import IssuanceService, IssuedCertificate

__all__ = ["BATCH", "ProvisionedDevice", "Provisioning", "device_ids"]

BATCH = 100
MAX_COUNT = 100_000
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,48}$")


@dataclass(frozen=True)
class ProvisionedDevice:
    device_id: str
    key: CertificateIssuerPrivateKeyTypes
    issued: IssuedCertificate


def device_ids(prefix: str, count: int, start: int = 1) -> list[str]:
    """``<prefix><number>``, numbers zero-padded to six digits (``plc-000001``)."""
    if not _PREFIX.fullmatch(prefix):
        raise InvalidRequestError("the device id prefix may use letters, digits and ._-", rule="device-id")
    if not 1 <= count <= MAX_COUNT or start < 0:
        raise InvalidRequestError(f"count must be 1 to {MAX_COUNT}", rule="count")
    return [f"{prefix}{n:06d}" for n in range(start, start + count)]


class Provisioning:
    def __init__(
        self,
        store: DeviceStore,
        issuance: IssuanceService,
        owners: Owners,
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
    ) -> None:
        self._store = store
        self._issuance = issuance
        self._owners = owners
        self._clock = clock
        self._audit = audit

    def provision(
        self,
        owner: str,
        ids: Sequence[str],
        *,
        profile: str = "device",
        key_type: KeyType = KeyType.EC_P256,
        actor: Actor = SYSTEM_ACTOR,
    ) -> Iterator[list[ProvisionedDevice]]:
        """Yield the devices batch by batch, each batch stored before it is yielded."""
        record = self._owners.get(owner)
        device_profile = self._issuance.profile(profile).identity is Identity.DEVICE
        for first in range(0, len(ids), BATCH):
            batch: list[ProvisionedDevice] = []
            events = []
            enrollments = []
            for device_id in ids[first : first + BATCH]:
                key = generate_private_key(key_type)
                csr = (
                    x509.CertificateSigningRequestBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
                    .sign(key, signature_hash_for(key))  # type: ignore[arg-type]
                )
                signed = self._issuance.sign(
                    csr.public_bytes(Encoding.PEM),
                    profile=profile,
                    ca=record.ca,
                    owner=owner if device_profile else None,
                    device_id=device_id,
                    actor=actor,
                )
                details = {"owner": owner, "serial": signed.issued.serial, "method": "preprovision"}
                succeeded = self._audit.event(actor, EventType.ENROLL_SUCCEEDED, device_id, details=details)
                events += [signed.event, succeeded]
                enrollments.append(
                    DeviceEnrollment(
                        device_id=device_id,
                        owner=owner,
                        profile=profile,
                        now=self._clock(),
                        superseded_event=superseded_event(self._audit, actor, device_id),
                    )
                )
                batch.append(ProvisionedDevice(device_id, key, signed.issued))
            self._store.add_devices(
                [d.issued.record for d in batch],
                enrollments,
                events,
                issuer_serials=signed.issuer_serials,
            )
            yield batch
