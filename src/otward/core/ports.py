"""Protocols the services need from the outside world; adapters implement them.

Each optional capability is its own small protocol so that a backend supports
what it can and nothing raises NotImplementedError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ReasonFlags

from otward.core.accounts import AccountRecord
from otward.core.audit import AuditEvent, AuditFilter, AuditRecord, SignedHead
from otward.core.console_sessions import ConsoleSession
from otward.core.keys import KeyType
from otward.core.records import (
    AuthorityRecord,
    CertificateFilter,
    CertificateRecord,
    ChallengeRecord,
    CrlRecord,
    DeviceEnrollment,
    DeviceListing,
    DeviceRecord,
    DeviceStatus,
    EnrollmentRetry,
    EnrollmentTokenRecord,
    OwnerRecord,
    PendingAuthorityRecord,
    TokenRecord,
)
from otward.core.revocation import RevokedEntry
from otward.core.transparency import TreeHead

__all__ = [
    "AccountStore",
    "AuditStore",
    "AuthorityStore",
    "CertificateStore",
    "ConsoleSessionStore",
    "CrlBuilder",
    "CrlStore",
    "DeviceStore",
    "EnrollmentTokenStore",
    "KeyBackend",
    "KeyRefStore",
    "OwnerStore",
    "SharedFileStore",
    "SignerStore",
    "StatisticsStore",
    "TokenStore",
    "TransparencyStore",
]


class KeyBackend(Protocol):
    """Creates and loads CA signing keys.

    ``load_key`` returns an object implementing cryptography's private-key
    interface; for a PKCS#11 backend its ``sign`` runs in the token, so issuance
    code never knows where the key lives.
    """

    def create_key(self, key_type: KeyType, label: str) -> str:
        """Generate a key and return its reference (e.g. ``file:keys/root.key.pem``)."""
        ...

    def load_key(self, key_ref: str) -> CertificateIssuerPrivateKeyTypes: ...

    def destroy_key(self, key_ref: str) -> None:
        """Delete a key that will sign nothing again (a rotated signer's); a missing key is no error."""
        ...


class SharedFileStore(Protocol):
    """Files that every node of an installation needs but one node creates (encrypted key files, the
    service's TLS identity), kept where all nodes reach them: the database."""

    def put_shared(self, name: str, data: bytes, *, replace: bool = False) -> None:
        """Store ``data`` under ``name``; ConflictError if it exists unless ``replace``."""
        ...

    def get_shared(self, name: str) -> bytes | None:
        """The data stored under ``name``; None if none is (or it was destroyed)."""
        ...

    def destroy_shared(self, name: str) -> None:
        """Forget the data of ``name`` for good, leaving a mark every node can act on."""
        ...

    def destroyed_shared(self) -> Sequence[str]:
        """The names whose data was destroyed."""
        ...


class KeyRefStore(Protocol):
    """The key references of CAs, responders and signers, for moving keys between backends."""

    def key_refs(self) -> list[str]:
        """Every key reference in use (CA, responder and signer keys)."""
        ...

    def replace_key_refs(self, moves: Mapping[str, str], events: Sequence[AuditEvent] = ()) -> int:
        """Replace each old reference by its new one wherever it is used, with ``events``, in one
        transaction; the number of references changed."""
        ...


class AuthorityStore(Protocol):
    def add_authority(
        self,
        authority: AuthorityRecord,
        certificates: Sequence[CertificateRecord],
        events: Sequence[AuditEvent] = (),
    ) -> None:
        """Store a CA with its own and its responder's certificate records and their events, atomically."""
        ...

    def get_authority(self, name: str) -> AuthorityRecord | None: ...

    def list_authorities(self) -> Sequence[AuthorityRecord]: ...

    def replace_ocsp_responder(
        self, name: str, certificate: CertificateRecord, key_ref: str, events: Sequence[AuditEvent] = ()
    ) -> None: ...

    def add_pending_authority(self, pending: PendingAuthorityRecord, events: Sequence[AuditEvent]) -> None:
        """Store a CA awaiting its certificate; ConflictError when the name is taken."""
        ...

    def get_pending_authority(self, name: str) -> PendingAuthorityRecord | None: ...

    def list_pending_authorities(self) -> Sequence[PendingAuthorityRecord]: ...

    def activate_authority(
        self,
        authority: AuthorityRecord,
        certificates: Sequence[CertificateRecord],
        events: Sequence[AuditEvent],
    ) -> None:
        """Turn the pending CA of the same name into ``authority``, atomically."""
        ...

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
        """Give CA ``name`` a new certificate for the same key (renewal), atomically with its record
        (not stored again when ``store_certificate`` is false: this installation signed it)."""
        ...

    def add_successor(
        self,
        previous: str,
        successor: AuthorityRecord,
        certificates: Sequence[CertificateRecord],
        events: Sequence[AuditEvent],
    ) -> None:
        """Store the next generation of CA ``previous`` and mark ``previous`` superseded, atomically."""
        ...


class CertificateStore(Protocol):
    def add_certificate(
        self,
        record: CertificateRecord,
        events: Sequence[AuditEvent] = (),
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None:
        """Store durably with its events and its transparency-log entry; returns only once committed.

        Refuses (PolicyViolationError, rule ``ca-revoked``) if a certificate in ``issuer_serials``
        (the issuing CA's chain) is revoked; the check runs in the same transaction."""
        ...

    def add_certificates(
        self,
        records: Sequence[CertificateRecord],
        events: Sequence[AuditEvent],
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None:
        """Store a batch with its events and log entries in one transaction: all or nothing."""
        ...

    def get_certificate(self, serial_number: int) -> CertificateRecord | None: ...

    def list_certificates(
        self, query: CertificateFilter, *, limit: int, offset: int
    ) -> tuple[Sequence[CertificateRecord], int]:
        """A page of certificates, newest first, and the total matching."""
        ...

    def revoke_certificate(
        self,
        serial_number: int,
        when: datetime,
        reason: ReasonFlags,
        events: Sequence[AuditEvent] = (),
        *,
        superseded_event: Callable[[CertificateRecord], AuditEvent] | None = None,
    ) -> CertificateRecord:
        """Mark revoked with its events; raise NotFoundError or ConflictError (already revoked).

        When it is a device's current certificate, the device's other unrevoked certificates (the
        one it renewed away, still within its overlap) are revoked as superseded in the same
        transaction, each with ``superseded_event(certificate)``: otherwise the device kept a valid
        certificate, and with it its Mosquitto ACL entry and its gateway access."""
        ...

    def revoked_entries(self, ca: str) -> Sequence[RevokedEntry]: ...

    def certificate_status(self, ca: str, serial_number: int) -> tuple[bool, RevokedEntry | None]:
        """(issued by ``ca``?, its revocation if revoked) — the OCSP hot path."""
        ...


class CrlStore(Protocol):
    def save_crl(self, ca: str, build: CrlBuilder) -> CrlRecord:
        """Allocate the next CRL number, let ``build`` make the CRL and store it, atomically."""
        ...

    def get_crl(self, ca: str) -> CrlRecord | None: ...

    def stale_crls(self) -> Sequence[str]:
        """CAs without a CRL, or whose CRL lists fewer (or other) revocations than are committed."""
        ...


class CrlBuilder(Protocol):
    def __call__(
        self, crl_number: int, revoked: Sequence[RevokedEntry]
    ) -> tuple[CrlRecord, Sequence[AuditEvent]]: ...


class TokenStore(Protocol):
    def add_token(self, token: TokenRecord, events: Sequence[AuditEvent] = ()) -> None: ...

    def list_tokens(self) -> Sequence[TokenRecord]: ...

    def revoke_token(self, token_id: str, when: datetime, events: Sequence[AuditEvent] = ()) -> TokenRecord:
        """Mark revoked with its events; NotFoundError, or ConflictError if already revoked."""
        ...

    def get_token(self, token_id: str) -> TokenRecord | None:
        """The token with its account's roles in ``grants`` (None if the account is gone or disabled)."""
        ...

    def list_account_tokens(self, account: str) -> Sequence[TokenRecord]: ...


class AccountStore(Protocol):
    """Named accounts; every change is stored with the events that record it."""

    def add_account(self, account: AccountRecord, events: Sequence[AuditEvent] = ()) -> None:
        """ConflictError if the name exists."""
        ...

    def get_account(self, name: str) -> AccountRecord | None: ...

    def list_accounts(self) -> Sequence[AccountRecord]: ...

    def save_account(self, account: AccountRecord, events: Sequence[AuditEvent] = ()) -> None:
        """NotFoundError if it does not exist."""
        ...

    def remove_account(self, name: str, when: datetime, events: Sequence[AuditEvent] = ()) -> None:
        """Delete it and revoke its tokens; NotFoundError if it does not exist."""
        ...


class OwnerStore(Protocol):
    def add_owner(self, owner: OwnerRecord, events: Sequence[AuditEvent] = ()) -> None: ...

    def get_owner(self, name: str) -> OwnerRecord | None: ...

    def list_owners(self) -> Sequence[OwnerRecord]: ...

    def update_owner(
        self,
        name: str,
        *,
        allow_server_keygen: bool | None,
        renewal_grace_days: int | None,
        events: Sequence[AuditEvent] = (),
    ) -> OwnerRecord: ...


class DeviceStore(Protocol):
    def enroll_device(
        self,
        record: CertificateRecord,
        enrollment: DeviceEnrollment,
        events: Sequence[AuditEvent],
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None:
        """Certificate, registry update and token use in one transaction, durable on return."""
        ...

    def repeat_enrollment(
        self, retry: EnrollmentRetry, event_for: Callable[[CertificateRecord], AuditEvent]
    ) -> CertificateRecord | None:
        """The certificate an enrollment asked for again, with its event recorded, if ``retry``
        matches (decided atomically with the device's other changes); None otherwise."""
        ...

    def enrollment_to_repeat(self, retry: EnrollmentRetry) -> CertificateRecord | None:
        """What :meth:`repeat_enrollment` would find now, without locking or recording anything."""
        ...

    def reset_device(
        self,
        device_id: str,
        when: datetime,
        events_for: Callable[[CertificateRecord], Sequence[AuditEvent]],
    ) -> CertificateRecord:
        """Revoke (superseded) the only, never used certificate of an active device, recording
        ``events_for(it)``; returns it."""
        ...

    def add_devices(
        self,
        records: Sequence[CertificateRecord],
        enrollments: Sequence[DeviceEnrollment],
        events: Sequence[AuditEvent],
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None: ...

    def get_device(self, device_id: str) -> DeviceRecord | None: ...

    def list_devices(
        self, *, owner: str | None, status: DeviceStatus | None, limit: int, offset: int
    ) -> tuple[Sequence[DeviceRecord], int]: ...

    def find_devices(
        self,
        *,
        owners: frozenset[str] | None,
        id_contains: str | None,
        status: DeviceStatus | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[DeviceListing], int]:
        """A page of devices ordered by id, of ``owners`` (None: every owner) whose id contains
        ``id_contains`` (taken literally), with their current certificate's expiry; and the total."""
        ...

    def count_devices_by_owner(self) -> Mapping[str, int]: ...

    def device_certificates(self, device_id: str) -> Sequence[CertificateRecord]: ...

    def set_device_status(
        self, device_id: str, status: DeviceStatus, events: Sequence[AuditEvent] = ()
    ) -> DeviceRecord: ...

    def revoke_device(
        self,
        device_id: str,
        when: datetime,
        reason: ReasonFlags,
        event_for: Callable[[CertificateRecord | None], AuditEvent],
    ) -> list[CertificateRecord]: ...

    def retire_superseded(
        self,
        due: datetime,
        when: datetime,
        event_for: Callable[[CertificateRecord], AuditEvent],
        *,
        device_id: str | None = None,
    ) -> list[CertificateRecord]:
        """Revoke (superseded) device certificates that are neither current nor within the overlap
        (replaced at or after ``due``); with ``device_id``, that device's previous one too."""
        ...

    def touch_device(self, device_id: str, when: datetime, *, attested: bool = False) -> None: ...

    def add_challenge(self, challenge: ChallengeRecord) -> None: ...

    def use_challenge(self, challenge_id: str, device_id: str, now: datetime) -> ChallengeRecord | None:
        """Spend a challenge atomically; None when unknown, foreign, used or expired."""
        ...

    def purge_challenges(self, before: datetime) -> int: ...


class EnrollmentTokenStore(Protocol):
    def add_enrollment_token(
        self, token: EnrollmentTokenRecord, events: Sequence[AuditEvent] = ()
    ) -> None: ...

    def get_enrollment_token(self, token_id: str) -> EnrollmentTokenRecord | None: ...

    def list_enrollment_tokens(self, owner: str | None = None) -> Sequence[EnrollmentTokenRecord]: ...

    def find_enrollment_tokens(
        self, *, owners: frozenset[str] | None, limit: int, offset: int
    ) -> tuple[Sequence[EnrollmentTokenRecord], int]:
        """A page of enrollment tokens (not renewal tokens) of ``owners`` (None: every owner),
        newest first, and their total."""
        ...

    def revoke_enrollment_token(
        self, token_id: str, when: datetime, events: Sequence[AuditEvent] = ()
    ) -> EnrollmentTokenRecord: ...

    def use_enrollment_token(self, token_id: str, now: datetime) -> bool:
        """Spend one use atomically; False when revoked, expired or used up."""
        ...


class AuditStore(Protocol):
    def append_events(self, events: Sequence[AuditEvent]) -> list[AuditRecord]: ...

    def audit_head(self) -> tuple[int, bytes]:
        """(sequence, hash) of the last record; (0, GENESIS_HASH) when empty."""
        ...

    def list_audit(
        self, query: AuditFilter, *, limit: int, offset: int, newest_first: bool = False
    ) -> tuple[Sequence[AuditRecord], int]:
        """A page of the records ``query`` selects, in chain order (or newest first), and how many
        it selects in all."""
        ...

    def iter_audit(self, *, batch: int = 5000) -> Iterator[AuditRecord]: ...

    def add_audit_head(self, head: SignedHead, *, after: SignedHead | None) -> bool:
        """Store ``head`` only if the newest stored head is still ``after`` (compare and set, under the
        ledger lock): of two processes that both found a head due, one stores and the other gets False."""
        ...

    def audit_heads(self) -> Sequence[SignedHead]: ...
    def latest_audit_head(self) -> SignedHead | None: ...

    def forward_cursor(self, name: str) -> int: ...

    def set_forward_cursor(self, name: str, sequence: int, when: datetime) -> None: ...


class SignerStore(Protocol):
    def add_signer(
        self, name: str, key_ref: str, certificate: CertificateRecord, events: Sequence[AuditEvent]
    ) -> None: ...

    def replace_signer(
        self,
        name: str,
        key_ref: str,
        certificate: CertificateRecord,
        events: Sequence[AuditEvent],
        *,
        previous_serial: str,
    ) -> None: ...

    def get_signer(self, name: str) -> tuple[str, bytes] | None: ...


class TransparencyStore(Protocol):
    def log_leaves(self, start: int = 0) -> list[bytes]:
        """Leaf hashes from index ``start`` on, in order."""
        ...

    def log_size(self) -> int: ...

    def log_index(self, serial_number: int) -> int | None: ...

    def add_tree_head(self, head: TreeHead) -> None: ...

    def tree_head(self, tree_size: int | None = None) -> TreeHead | None: ...


class StatisticsStore(Protocol):
    def certificate_counts(self) -> list[tuple[str, str, int, int]]: ...

    def expiring_counts(self, now: datetime, until: datetime) -> dict[str, int]: ...

    def certificate_status_counts(
        self, now: datetime, expiring_before: datetime
    ) -> list[tuple[str, int, int, int, int]]:
        """(ca, valid, expiring, expired, revoked) per CA; the four counts never overlap."""
        ...

    def expiring_per_day(self, now: datetime, until: datetime) -> dict[date, int]:
        """Unrevoked certificates valid at ``now`` expiring before ``until``, by UTC day."""
        ...

    def events_per_day(self, types: Sequence[str], since: datetime) -> dict[tuple[date, str], int]:
        """Audit events of ``types`` since ``since``, by UTC day and type."""
        ...

    def event_counts(self) -> list[tuple[str, str, int]]: ...

    def failure_count(self, event_type: str) -> int:
        """Failures of ``event_type`` recorded, counting what each aggregated event stands for."""
        ...


class ConsoleSessionStore(Protocol):
    """Web console sessions (:mod:`otward.core.console_sessions`)."""

    def add_session(self, session: ConsoleSession, events: Sequence[AuditEvent] = ()) -> None: ...

    def get_session(self, session_id: str) -> ConsoleSession | None: ...

    def touch_session(self, session_id: str, when: datetime) -> None: ...

    def end_session(self, session_id: str, when: datetime, events: Sequence[AuditEvent] = ()) -> bool: ...

    def purge_sessions(self, before: datetime) -> int: ...
