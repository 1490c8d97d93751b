"""The device registry and challenge-response attestation.

A device is registered by its first enrollment and keeps its id, owner and
profile for life. Attestation proves that whoever answers holds the key of the
device's current certificate: the server picks a fresh nonce (single use, 60 s), the
device signs :func:`otward.core.attestation.challenge_message` with its key. A
passed ``renew`` challenge earns a single-use renewal token, which is how a
device renews when it cannot present its certificate in TLS: its key is in a
PKCS#11 token, or its certificate expired within the owner's grace period.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509 import ReasonFlags

from otward.core.attestation import ChallengePurpose, challenge_message
from otward.core.audit import AuditEvent, EventType, Outcome
from otward.core.identifiers import DEVICE_ID
from otward.core.keys import verify_data
from otward.core.ports import DeviceStore
from otward.core.records import (
    CertificateRecord,
    ChallengeRecord,
    DeviceListing,
    DeviceRecord,
    DeviceStatus,
)
from otward.core.revocation import reason_name
from otward.errors import AuthenticationError, InvalidRequestError, NotFoundError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.enrollment import EnrollmentTokens, Owners
from otward.services.revocation import RevocationService

__all__ = ["CHALLENGE_TTL", "Attestation", "Devices", "superseded_event"]

CHALLENGE_TTL = timedelta(seconds=60)
RENEWAL_TOKEN_TTL = timedelta(minutes=5)
_NONCE_BYTES = 32
_FAILED = "attestation failed: unknown, used or expired challenge, or a signature by no key of the device"


def superseded_event(audit: AuditLog, actor: Actor, device_id: str) -> Callable[[str], AuditEvent]:
    """The ``cert.revoked`` event of a device certificate retired because a newer one replaced it."""

    def event(serial: str) -> AuditEvent:
        details = {"device_id": device_id}
        return audit.event(actor, EventType.CERT_REVOKED, serial, reason="superseded", details=details)

    return event


@dataclass(frozen=True)
class Attestation:
    """A passed challenge: which certificate's key answered, and a renewal token when one was asked."""

    device_id: str
    serial: str
    purpose: ChallengePurpose
    renewal_token: str | None = None


class Devices:
    def __init__(
        self,
        store: DeviceStore,
        owners: Owners,
        tokens: EnrollmentTokens,
        revocation: RevocationService,
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
        superseded_overlap: timedelta = timedelta(hours=1),
    ) -> None:
        """``superseded_overlap``: how long a renewed device's previous certificate stays unrevoked
        when the device does not show otward its new one first (connections it holds can move over)."""
        self._store = store
        self._superseded_overlap = superseded_overlap
        self._owners = owners
        self._tokens = tokens
        self._revocation = revocation
        self._clock = clock
        self._audit = audit

    # --- registry ------------------------------------------------------------------------------

    def get(self, device_id: str) -> DeviceRecord:
        record = self._store.get_device(device_id)
        if record is None:
            raise NotFoundError(f"device '{device_id}' not found", rule="device")
        return record

    def list(
        self,
        *,
        owner: str | None = None,
        status: DeviceStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[Sequence[DeviceRecord], int]:
        return self._store.list_devices(owner=owner, status=status, limit=limit, offset=offset)

    def find(
        self,
        *,
        owners: frozenset[str] | None = None,
        id_contains: str | None = None,
        status: DeviceStatus | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[Sequence[DeviceListing], int]:
        """A page of the registry for a list: devices of ``owners`` (None: all) whose id contains
        ``id_contains``, each with its current certificate's expiry; and how many match."""
        return self._store.find_devices(
            owners=owners, id_contains=id_contains, status=status, limit=limit, offset=offset
        )

    def count_by_owner(self) -> Mapping[str, int]:
        """How many devices each owner has (owners without devices are absent)."""
        return self._store.count_devices_by_owner()

    def certificates(self, device_id: str) -> Sequence[CertificateRecord]:
        """The device's certificate history, newest first."""
        self.get(device_id)
        return self._store.device_certificates(device_id)

    def disable(self, device_id: str, actor: Actor = SYSTEM_ACTOR) -> DeviceRecord:
        """A disabled device keeps its certificates but cannot enroll, re-enroll or renew."""
        event = self._audit.event(actor, EventType.DEVICE_DISABLED, device_id)
        return self._store.set_device_status(device_id, DeviceStatus.DISABLED, [event])

    def enable(self, device_id: str, actor: Actor = SYSTEM_ACTOR) -> DeviceRecord:
        event = self._audit.event(actor, EventType.DEVICE_ENABLED, device_id)
        return self._store.set_device_status(device_id, DeviceStatus.ACTIVE, [event])

    def revoke(
        self,
        device_id: str,
        reason: ReasonFlags = ReasonFlags.cessation_of_operation,
        actor: Actor = SYSTEM_ACTOR,
    ) -> Sequence[CertificateRecord]:
        """Revoke the device for good with every certificate it holds; CRLs are republished at once."""

        def event_for(certificate: CertificateRecord | None) -> AuditEvent:
            if certificate is None:
                return self._audit.event(
                    actor, EventType.DEVICE_REVOKED, device_id, reason=reason_name(reason)
                )
            details = {"ca": certificate.ca, "dn": certificate.subject, "device_id": device_id}
            return self._audit.event(
                actor, EventType.CERT_REVOKED, certificate.serial, reason=reason_name(reason), details=details
            )

        revoked = self._store.revoke_device(device_id, self._clock(), reason, event_for)
        for ca in sorted({c.ca for c in revoked}):
            self._revocation.publish_crl(ca, actor)
        return revoked

    def reset(self, device_id: str, actor: Actor = SYSTEM_ACTOR) -> CertificateRecord:
        """Undo the enrollment of a device that never used its certificate, because its client failed
        after the server issued and the retry window is over: the certificate is revoked (reason
        superseded: it is replaced, nothing was compromised) and its CA's CRL re-signed at once, and
        the device's owner enrolls it again with a new token. Audited as ``device.reset`` with a
        ``cert.revoked``. Refused for a device that renewed, attested or is not active: its
        certificate was used, and it is revoked instead (:meth:`revoke`)."""

        def events_for(certificate: CertificateRecord) -> Sequence[AuditEvent]:
            details = {"serial": certificate.serial, "ca": certificate.ca}
            revoked = {"ca": certificate.ca, "dn": certificate.subject, "device_id": device_id}
            return [
                self._audit.event(actor, EventType.DEVICE_RESET, device_id, details=details),
                self._audit.event(
                    actor, EventType.CERT_REVOKED, certificate.serial, reason="superseded", details=revoked
                ),
            ]

        revoked = self._store.reset_device(device_id, self._clock(), events_for)
        self._revocation.publish_crl(revoked.ca, actor)
        return revoked

    def retire_superseded(self, device_id: str | None = None, actor: Actor = SYSTEM_ACTOR) -> Sequence[str]:
        """Revoke (superseded) the certificates renewed devices no longer need: every device's previous
        certificate whose overlap is over, or ``device_id``'s at once (it has used its new one).
        Returns the serials revoked; their CAs' CRLs are re-signed at once."""
        now = self._clock()

        def event_for(certificate: CertificateRecord) -> AuditEvent:
            details = {
                "ca": certificate.ca,
                "dn": certificate.subject,
                "device_id": certificate.device_id or "",
            }
            return self._audit.event(
                actor, EventType.CERT_REVOKED, certificate.serial, reason="superseded", details=details
            )

        revoked = self._store.retire_superseded(
            now - self._superseded_overlap, now, event_for, device_id=device_id
        )
        for ca in sorted({c.ca for c in revoked}):
            self._revocation.publish_crl(ca, actor)
        return [c.serial for c in revoked]

    # --- attestation ---------------------------------------------------------------------------

    def challenge(self, device_id: str, purpose: ChallengePurpose) -> ChallengeRecord:
        """A fresh nonce for ``device_id``, whether it is an active, disabled, revoked or unknown
        device: the endpoint is unauthenticated and must not tell which ids are devices. The answer
        proves nothing for a revoked or unknown one (:meth:`attest` fails). Only an id that no device
        can have is refused."""
        if not DEVICE_ID.is_valid(device_id):
            raise InvalidRequestError("a device id is 1-64 letters, digits or ._-", rule="device-id")
        now = self._clock()
        record = ChallengeRecord(
            challenge_id=secrets.token_hex(16),
            device_id=device_id,
            purpose=purpose.value,
            nonce=secrets.token_bytes(_NONCE_BYTES),
            created_at=now,
            expires_at=now + CHALLENGE_TTL,
        )
        self._store.add_challenge(record)
        return record

    def attest(self, device_id: str, challenge_id: str, signature: bytes, actor: Actor) -> Attestation:
        """Check the device's answer; record the result either way (``device.attested``).

        The challenge is spent before the signature is checked, so a wrong answer cannot be retried
        and a replayed one finds the challenge used."""
        now = self._clock()
        challenge = self._store.use_challenge(challenge_id, device_id, now)
        device = self._store.get_device(device_id)
        if challenge is None or device is None or device.status is DeviceStatus.REVOKED:
            why = (
                "unknown device" if device is None else "revoked device" if challenge else "no such challenge"
            )
            raise self._failed(actor, device_id, f"{why} (challenge {challenge_id[:32]})")
        purpose = ChallengePurpose(challenge.purpose)
        message = challenge_message(device_id, purpose, challenge.nonce)
        matched = next(
            (c for c in self._candidates(device, purpose, now) if _signed_by(c, signature, message)), None
        )
        if matched is None:
            raise self._failed(actor, device_id, "the signature verifies with no usable certificate's key")
        renewal_token = None
        if purpose is ChallengePurpose.RENEW:
            if device.status is not DeviceStatus.ACTIVE:
                raise self._failed(actor, device_id, f"device is {device.status.value}; it cannot renew")
            _, renewal_token = self._tokens.create_renewal(
                device.owner, device_id, device.profile, ttl=RENEWAL_TOKEN_TTL, actor=actor
            )
        self._store.touch_device(device_id, now, attested=True)
        if device.superseded_serial is not None:
            self.retire_superseded(device_id, actor)  # the device holds its new key: the old one goes
        details = {"serial": matched.serial, "purpose": purpose.value}
        self._audit.record(self._audit.event(actor, EventType.DEVICE_ATTESTED, device_id, details=details))
        return Attestation(device_id, matched.serial, purpose, renewal_token)

    def _candidates(
        self, device: DeviceRecord, purpose: ChallengePurpose, now: datetime
    ) -> Sequence[CertificateRecord]:
        """The certificate whose key may answer: the device's current one, unrevoked and valid now; for
        a renewal also when it expired within the owner's grace period. A certificate the device
        renewed away proves nothing (it must not earn a renewal token)."""
        grace = timedelta(0)
        if purpose is ChallengePurpose.RENEW:
            grace = timedelta(days=self._owners.get(device.owner).renewal_grace_days)
        return [
            c
            for c in self._store.device_certificates(device.device_id)
            if c.serial == device.current_serial
            and c.revoked_at is None
            and c.not_valid_before <= now
            and c.not_valid_after + grace > now
        ]

    def _failed(self, actor: Actor, device_id: str, reason: str) -> AuthenticationError:
        self._audit.record(
            self._audit.event(
                actor, EventType.DEVICE_ATTESTED, device_id[:64], outcome=Outcome.FAILURE, reason=reason
            )
        )
        return AuthenticationError(_FAILED, rule="attestation")

    def purge_challenges(self) -> int:
        """Forget challenges that expired more than an hour ago (they are single use anyway)."""
        return self._store.purge_challenges(self._clock() - timedelta(hours=1))


def _signed_by(certificate: CertificateRecord, signature: bytes, message: bytes) -> bool:
    public_key = x509.load_der_x509_certificate(certificate.der).public_key()
    return verify_data(public_key, signature, message)
