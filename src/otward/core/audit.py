"""Security events and the hash chain that makes their record tamper-evident.

Every component writes the same event shape (ISA/IEC 62443-3-3 SR 2.8: time in
UTC, component, event type, subject, outcome). Events are chained: each record
stores SHA-256(previous hash || SHA-256(canonical event)), so editing, deleting,
reordering or inserting a record breaks the chain at that record. The chain
head is signed from time to time (:class:`SignedHead`), which also catches
records cut off the end.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = [
    "GENESIS_HASH",
    "AuditEvent",
    "AuditFilter",
    "AuditRecord",
    "ChainCheck",
    "EventType",
    "Outcome",
    "SignedHead",
    "chain_hash",
    "chain_hash_of_bytes",
    "check_chain",
    "event_bytes",
    "format_time",
    "head_bytes",
]

GENESIS_HASH = bytes(32)


class EventType(enum.Enum):
    """The documented enumeration of event types (docs/audit.md)."""

    CERT_ISSUED = "cert.issued"
    CERT_REFUSED = "cert.refused"
    CERT_REVOKED = "cert.revoked"
    CERT_EXPIRING = "cert.expiring"
    CA_CREATED = "ca.created"
    CRL_SIGNED = "crl.signed"
    OCSP_SIGNED = "ocsp.signed"
    OCSP_RESPONDER_RENEWED = "ocsp.responder_renewed"
    AUTH_FAILED = "auth.failed"
    AUTHZ_DENIED = "authz.denied"
    TOKEN_CREATED = "token.created"  # noqa: S105 - an event name
    TOKEN_REVOKED = "token.revoked"  # noqa: S105 - an event name
    OWNER_CREATED = "owner.created"
    ENROLL_TOKEN_CREATED = "enroll_token.created"  # noqa: S105 - an event name
    ENROLL_TOKEN_REVOKED = "enroll_token.revoked"  # noqa: S105 - an event name
    ENROLL_SUCCEEDED = "enroll.succeeded"
    ENROLL_REFUSED = "enroll.refused"
    OWNER_CHANGED = "owner.changed"
    DEVICE_DISABLED = "device.disabled"
    DEVICE_ENABLED = "device.enabled"
    DEVICE_REVOKED = "device.revoked"
    DEVICE_ATTESTED = "device.attested"
    POLICY_CHANGED = "policy.changed"
    INTEGRITY_FAILED = "integrity.failed"
    SERVICE_STARTED = "service.started"
    SERVICE_STOPPED = "service.stopped"
    SIGNER_CREATED = "signer.created"
    SIGNER_ROTATED = "signer.rotated"  # a service signer got a new key and certificate
    GATEWAY_CONNECTION = "gateway.connection"  # a client connection accepted or refused at a gateway
    GATEWAY_DENIED = "gateway.denied"  # a request refused by the gateway's protocol policy
    GATEWAY_CLOSED = "gateway.closed"  # an open connection closed because its certificate became revoked
    ACCESS_CHANGED = "access.changed"  # people, roles, assets or grants administered
    ACCESS_DECIDED = "access.decided"  # a gatekeeper's allow (success) or deny (failure)
    ACCESS_BUNDLE_ISSUED = "access.bundle_issued"
    ACCESS_BUNDLE_REFUSED = "access.bundle_refused"  # bad signature, rollback or expiry at the asset
    ACCESS_CREDENTIAL_ISSUED = "access.credential_issued"
    ACCESS_CREDENTIAL_REVOKED = "access.credential_revoked"


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditEvent:
    """One security-relevant event, as every component reports it."""

    time: datetime
    host: str
    component: str
    type: EventType
    subject: str
    outcome: Outcome
    reason: str | None = None
    source: str | None = None
    request_id: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.time, datetime):
            raise TypeError(f"audit event time {str(self.time)[:40]!r} is not a time")
        if self.time.tzinfo is None:
            raise ValueError("audit event time must be timezone-aware")

    def to_dict(self) -> dict[str, object]:
        return {
            "time": format_time(self.time),
            "host": self.host,
            "component": self.component,
            "type": self.type.value,
            "subject": self.subject,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "source": self.source,
            "request_id": self.request_id,
            "details": dict(sorted(self.details.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AuditEvent:
        """The inverse of :meth:`to_dict`; raises ValueError on anything else."""
        try:
            time = datetime.strptime(str(data["time"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            details = data.get("details") or {}
            if not isinstance(details, Mapping):
                raise ValueError("details must be an object")
            return cls(
                time=time,
                host=str(data["host"]),
                component=str(data["component"]),
                type=EventType(data["type"]),
                subject=str(data["subject"]),
                outcome=Outcome(data["outcome"]),
                reason=_optional_text(data.get("reason")),
                source=_optional_text(data.get("source")),
                request_id=_optional_text(data.get("request_id")),
                details={str(key): str(value) for key, value in details.items()},
            )
        except KeyError as missing:
            raise ValueError(f"audit event lacks {missing.args[0]!r}") from None


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


def event_bytes(event: AuditEvent) -> bytes:
    """Canonical encoding: JSON with sorted keys, no spaces, UTF-8. What the chain hashes."""
    return json.dumps(event.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(previous: bytes, event: AuditEvent) -> bytes:
    return chain_hash_of_bytes(previous, event_bytes(event))


def chain_hash_of_bytes(previous: bytes, canonical_event: bytes) -> bytes:
    """:func:`chain_hash` for an event already encoded by :func:`event_bytes` (encode once, use twice)."""
    return hashlib.sha256(previous + hashlib.sha256(canonical_event).digest()).digest()


@dataclass(frozen=True)
class AuditFilter:
    """Which events a listing shows; None means no restriction."""

    since: datetime | None = None
    until: datetime | None = None
    type: str | None = None
    subject: str | None = None
    outcome: str | None = None
    after_sequence: int | None = None


@dataclass(frozen=True)
class AuditRecord:
    """A stored event with its place in the chain."""

    sequence: int
    event: AuditEvent
    previous_hash: bytes
    hash: bytes


@dataclass(frozen=True)
class SignedHead:
    """A signature over the chain head at ``sequence``."""

    sequence: int
    hash: bytes
    signed_at: datetime
    signature: bytes
    signer_serial: int


def head_bytes(sequence: int, head_hash: bytes, signed_at: datetime) -> bytes:
    """What a head signature covers."""
    return f"otward-audit-head:v1:{sequence}:{head_hash.hex()}:{format_time(signed_at)}".encode()


@dataclass(frozen=True)
class ChainCheck:
    """Result of walking the chain: ok, or the first bad record and why."""

    ok: bool
    records: int
    heads: int
    first_bad_sequence: int | None = None
    problem: str | None = None


def check_chain(
    records: Iterable[AuditRecord],
    heads: Iterable[SignedHead],
    *,
    head_signature_valid: Callable[[SignedHead], bool] | None = None,
) -> ChainCheck:
    """Walk ``records`` in stored order and compare with the signed ``heads``.

    ``head_signature_valid`` checks a head's signature; the caller supplies it because
    verifying needs the signer's certificate, which the core does not fetch.
    """
    verify = head_signature_valid
    expected_previous = GENESIS_HASH
    expected_sequence = 1
    hashes: dict[int, bytes] = {}
    count = 0
    for record in records:
        count += 1
        if record.sequence != expected_sequence:
            kind = (
                "missing or reordered" if record.sequence > expected_sequence else "duplicated or reordered"
            )
            return ChainCheck(
                False,
                count,
                0,
                expected_sequence,
                f"record {expected_sequence} {kind}: found {record.sequence} in its place",
            )
        if record.previous_hash != expected_previous:
            return ChainCheck(
                False,
                count,
                0,
                record.sequence,
                f"record {record.sequence} does not follow record {record.sequence - 1}",
            )
        if chain_hash(record.previous_hash, record.event) != record.hash:
            return ChainCheck(False, count, 0, record.sequence, f"record {record.sequence} was altered")
        hashes[record.sequence] = record.hash
        expected_previous = record.hash
        expected_sequence += 1
    head_count = 0
    for head in heads:
        head_count += 1
        if verify is not None and not verify(head):
            return ChainCheck(
                False,
                count,
                head_count,
                head.sequence,
                f"signed head at record {head.sequence} has an invalid signature",
            )
        stored = hashes.get(head.sequence)
        if stored is None:
            return ChainCheck(
                False,
                count,
                head_count,
                head.sequence,
                f"records up to {head.sequence} were signed but the chain ends at {count}",
            )
        if stored != head.hash:
            return ChainCheck(
                False,
                count,
                head_count,
                head.sequence,
                f"chain up to record {head.sequence} differs from its signed head",
            )
    return ChainCheck(True, count, head_count)
