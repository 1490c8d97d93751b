"""Stored facts about authorities and certificates, as the services and adapters exchange them."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ReasonFlags

from otward.core.audit import AuditEvent
from otward.core.authz import Grant, Scope
from otward.core.identity import ClientName, client_name

__all__ = [
    "AuthorityRecord",
    "CertificateFilter",
    "CertificateKind",
    "CertificateRecord",
    "CertificateStatus",
    "ChallengeRecord",
    "CrlRecord",
    "DeviceEnrollment",
    "DeviceListing",
    "DeviceRecord",
    "DeviceStatus",
    "EnrollmentRetry",
    "EnrollmentTokenRecord",
    "OwnerRecord",
    "PendingAuthorityRecord",
    "TokenRecord",
    "certificate_record",
    "format_serial",
    "parse_serial",
]


def format_serial(serial_number: int) -> str:
    """Serial numbers are shown and stored as lower-case hex without separators."""
    return format(serial_number, "x")


def parse_serial(text: str) -> int:
    """Accept hex with or without colons, case-insensitive; raise ValueError otherwise."""
    cleaned = text.strip().replace(":", "").lower().removeprefix("0x")
    if not cleaned or len(cleaned) > 42 or any(c not in "0123456789abcdef" for c in cleaned):
        raise ValueError(f"'{text}' is not a hexadecimal serial number")
    return int(cleaned, 16)


CertificateStatus = Literal["valid", "expired", "revoked"]


class CertificateKind(enum.Enum):
    END_ENTITY = "end-entity"
    CA = "ca"
    OCSP_RESPONDER = "ocsp-responder"


@dataclass(frozen=True)
class AuthorityRecord:
    name: str
    parent: str | None
    certificate_der: bytes
    key_ref: str
    ocsp_certificate_der: bytes
    ocsp_key_ref: str
    created_at: datetime
    # DER of the issuers above a CA signed outside otward, nearest first (empty: parent or root).
    external_chain: tuple[bytes, ...] = ()
    superseded_by: str | None = None  # the next generation after a rollover

    @property
    def is_root(self) -> bool:
        """A self-signed CA of this installation (no parent here, none outside)."""
        return self.parent is None and not self.external_chain


@dataclass(frozen=True)
class PendingAuthorityRecord:
    """A CA whose key exists and whose certificate is being signed outside (a CSR was written)."""

    name: str
    key_ref: str
    csr_der: bytes
    path_length: int | None
    created_at: datetime


@dataclass(frozen=True)
class CertificateRecord:
    serial_number: int
    ca: str
    profile: str
    kind: CertificateKind
    subject: str
    not_valid_before: datetime
    not_valid_after: datetime
    der: bytes
    created_at: datetime
    revoked_at: datetime | None = None
    revocation_reason: ReasonFlags | None = None
    device_id: str | None = None
    # set on a freshly signed client certificate: the CN it claims for its namespace when stored
    client_name: ClientName | None = None

    @property
    def serial(self) -> str:
        return format_serial(self.serial_number)

    def status_at(self, now: datetime) -> CertificateStatus:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.not_valid_after <= now else "valid"


@dataclass(frozen=True)
class CertificateFilter:
    """Which certificates a listing shows; None means no restriction.

    ``subject`` matches a part of the subject DN or of the device id, ignoring case;
    ``serial_prefix`` the start of the lower-case hex serial; ``owner`` the owner of the device
    the certificate was issued to."""

    ca: str | None = None
    profile: str | None = None
    revoked: bool | None = None
    expires_before: datetime | None = None
    expires_after: datetime | None = None
    subject: str | None = None
    serial_prefix: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class CrlRecord:
    ca: str
    crl_number: int
    this_update: datetime
    next_update: datetime
    der: bytes


@dataclass(frozen=True)
class OwnerRecord:
    """An account devices belong to; its devices are issued by ``ca``.

    ``allow_server_keygen`` lets its devices ask the server for a key (EST serverkeygen);
    ``renewal_grace_days`` lets a device whose certificate expired at most that long ago renew
    by proving it holds the expired certificate's key (0: never).
    """

    name: str
    ca: str
    created_at: datetime
    allow_server_keygen: bool = False
    renewal_grace_days: int = 0


class DeviceStatus(enum.Enum):
    ACTIVE = "active"
    DISABLED = "disabled"  # cannot enroll or re-enroll until enabled again
    REVOKED = "revoked"  # for good: all its certificates are revoked


@dataclass(frozen=True)
class DeviceRecord:
    """A device in the registry: whose it is, its state, its current certificate, when it was seen."""

    device_id: str
    owner: str
    status: DeviceStatus
    profile: str
    current_serial: str | None
    enrollment_token_id: str | None
    first_seen: datetime
    last_seen: datetime
    last_attested_at: datetime | None = None
    # the certificate the current one replaced, still unrevoked: revoked as superseded once the
    # device uses its new certificate, or when the overlap after ``superseded_at`` is over
    superseded_serial: str | None = None
    superseded_at: datetime | None = None


@dataclass(frozen=True)
class DeviceListing:
    """A registry row as a list shows it: the device and when its current certificate expires
    (None: it has none)."""

    device: DeviceRecord
    current_not_valid_after: datetime | None


@dataclass(frozen=True)
class DeviceEnrollment:
    """What an enrollment changes in the registry, written in the certificate's transaction.

    ``token_id`` is spent (one use) when set. ``existing_only`` is for renewals: the device must be
    registered already. ``new_device_only`` refuses a device whose current certificate is still valid
    (an enrollment token must not take over an enrolled device). ``renewing_serial`` is the certificate
    a re-enrollment presented: it must still be the device's current one when the renewal commits.
    ``superseded_event`` records the revocation of a certificate this enrollment retires for good.
    ``request_key_pin`` (token enrollments) is kept with the device so that the enrollment can be
    repeated (:class:`EnrollmentRetry`). ``retry_of`` makes this enrollment the repetition of a
    server-keygen enrollment whose key was lost: it must still match when it commits, spends no
    token use, and revokes the certificate it replaces at once."""

    device_id: str
    owner: str
    profile: str
    now: datetime
    token_id: str | None = None
    existing_only: bool = False
    new_device_only: bool = True
    superseded_event: Callable[[str], AuditEvent] = field(kw_only=True)
    renewing_serial: str | None = None
    request_key_pin: str | None = None
    retry_of: EnrollmentRetry | None = None


@dataclass(frozen=True)
class EnrollmentRetry:
    """A token enrollment asked for again: the same token, device id and request key as the one that
    issued the device's current certificate, not long after.

    It matches while that certificate is the device's current one, unrevoked, issued at or after
    ``since`` and never used (the device has not attested since), the device is active, and its key
    is the request's (``server_keygen`` False) or one the server made (``server_keygen`` True).

    A renewal asked for again (``renewed_from``: the certificate the device renewed with, presented
    again because the answer was lost) has no token and no time bound of its own: it matches while
    the presented certificate is the device's unrevoked superseded one, which the device's first use
    of the new certificate or the end of the overlap revokes."""

    device_id: str
    token_id: str | None
    request_key_pin: str  # spki_pin of the key the request is signed with
    since: datetime
    server_keygen: bool = False
    serial: str | None = None  # the certificate it must find (what a server-keygen retry replaces)
    renewed_from: str | None = None  # the superseded certificate a renewal retry presents


@dataclass(frozen=True)
class ChallengeRecord:
    """A single-use nonce a device must sign; it expires quickly."""

    challenge_id: str
    device_id: str
    purpose: str
    nonce: bytes
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True)
class EnrollmentTokenRecord:
    """A time-limited, use-limited token that lets devices of ``owner`` enroll; only its hash is stored."""

    token_id: str
    owner: str
    secret_hash: bytes
    profile: str
    device_id_pattern: str
    uses_allowed: int
    uses: int
    expires_at: datetime
    created_at: datetime
    revoked_at: datetime | None = None
    kind: Literal["enrollment", "renewal"] = "enrollment"

    def state_at(self, now: datetime) -> Literal["active", "expired", "used", "revoked"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.uses >= self.uses_allowed:
            return "used"
        return "expired" if self.expires_at <= now else "active"


@dataclass(frozen=True)
class TokenRecord:
    """An API token; only the SHA-256 of its secret is ever stored."""

    token_id: str
    name: str
    secret_hash: bytes
    created_at: datetime
    revoked_at: datetime | None = None
    scope: Scope = Scope.ADMIN
    expires_at: datetime | None = None  # None: until revoked
    account: str = "admin"  # the account it belongs to: it never does more than the account may
    grants: frozenset[Grant] | None = (
        None  # the account's roles as read with it; None: no such account, or disabled
    )


def certificate_record(
    certificate: x509.Certificate, *, ca: str, profile: str, kind: CertificateKind, now: datetime
) -> CertificateRecord:
    """The record stored for a freshly signed ``certificate``."""
    return CertificateRecord(
        serial_number=certificate.serial_number,
        ca=ca,
        profile=profile,
        kind=kind,
        subject=certificate.subject.rfc4514_string(),
        not_valid_before=certificate.not_valid_before_utc,
        not_valid_after=certificate.not_valid_after_utc,
        der=certificate.public_bytes(Encoding.DER),
        created_at=now,
        client_name=client_name(certificate) if kind is CertificateKind.END_ENTITY else None,
    )
