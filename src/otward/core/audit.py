"""Security events and the hash chain that makes their record tamper-evident.

Every component writes the same event shape (ISA/IEC 62443-3-3 SR 2.8: time in
UTC, component, event type, subject, outcome). Events are chained: each record
stores SHA-256(previous hash || SHA-256(canonical event)), so editing, deleting,
reordering or inserting a record breaks the chain at that record.

A chain alone proves nothing against someone who can write the table: anyone can
recompute it. What proves the trail is a :class:`SignedHead` over its end, signed
by a key whose certificate chains to a trust anchor kept outside the database.
:func:`verify_trail` therefore fails unless such a head covers the trail, reports
the records after the newest head as an unsigned tail (an error once it is older
than allowed) and fails on a trail shorter than any head or the ledger says.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from otward.core.chain import find_path
from otward.errors import IntegrityError

__all__ = [
    "AGGREGATED_SUBJECT",
    "AUDIT_SIGNING_OID",
    "GENESIS_HASH",
    "LEGACY_AUDIT_SIGNER_CN",
    "AuditEvent",
    "AuditFilter",
    "AuditRecord",
    "ChainCheck",
    "EventType",
    "HeadSchedule",
    "HeadSigner",
    "KnownHead",
    "Outcome",
    "SignedHead",
    "TrailCheck",
    "TrailStatus",
    "chain_hash",
    "chain_hash_of_bytes",
    "check_chain",
    "check_extension",
    "event_bytes",
    "format_time",
    "head_bytes",
    "is_audit_signer",
    "is_head_due",
    "verify_head_signer",
    "verify_trail",
]

GENESIS_HASH = bytes(32)


AGGREGATED_SUBJECT = "(repeated failures)"
"""The subject of one event standing for many failures of a source (``details.failures``)."""


class EventType(enum.Enum):
    """The documented enumeration of event types (docs/audit.md)."""

    CERT_ISSUED = "cert.issued"
    CERT_REFUSED = "cert.refused"
    CERT_REVOKED = "cert.revoked"
    CERT_EXPIRING = "cert.expiring"
    CA_CREATED = "ca.created"
    CA_KEY_MOVED = "ca.key_moved"  # a CA, responder or signer key moved to another key backend
    CA_CSR_WRITTEN = (
        "ca.csr_written"  # a CA key made for a parent outside otward, waiting for its certificate
    )
    CA_IMPORTED = "ca.imported"  # a CA certificate signed outside checked and taken (pending CA activated)
    CA_CSR_SIGNED = "ca.csr_signed"  # another installation's CA request signed (ca sign-csr)
    CA_RENEWED = "ca.renewed"  # same key, new certificate
    CA_ROLLED_OVER = "ca.rolled_over"  # new key and certificate under the next generation's name
    CA_REVOKED = "ca.revoked"  # a subordinate CA revoked by name (its certificate on the parent's CRL)
    CA_EXPIRING = "ca.expiring"  # a CA certificate crossed 90, 30 or 7 days before notAfter
    CRL_SIGNED = "crl.signed"
    OCSP_SIGNED = "ocsp.signed"
    OCSP_RESPONDER_RENEWED = "ocsp.responder_renewed"
    AUTH_FAILED = "auth.failed"
    AUTHZ_DENIED = "authz.denied"
    TOKEN_CREATED = "token.created"  # noqa: S105 - an event name
    TOKEN_REVOKED = "token.revoked"  # noqa: S105 - an event name
    ACCOUNT_CREATED = "account.created"
    ACCOUNT_CHANGED = "account.changed"  # roles, password, TOTP, enabled or disabled: details.change
    ACCOUNT_REMOVED = "account.removed"
    ACCOUNT_LOCKED = "account.locked"  # too many failed sign-ins: details.until
    SIGNIN_SUCCEEDED = "signin.succeeded"
    SESSION_ENDED = "session.ended"  # a console session signed out (details.session)
    APPROVAL_REQUESTED = "approval.requested"  # a gated operation stored, waiting for a second account
    APPROVAL_APPROVED = "approval.approved"  # approved and carried out (details.result)
    APPROVAL_REJECTED = "approval.rejected"  # rejected, or withdrawn by its requester
    APPROVAL_EXPIRED = "approval.expired"
    OWNER_CREATED = "owner.created"
    ENROLL_TOKEN_CREATED = "enroll_token.created"  # noqa: S105 - an event name
    ENROLL_TOKEN_REVOKED = "enroll_token.revoked"  # noqa: S105 - an event name
    ENROLL_SUCCEEDED = "enroll.succeeded"
    ENROLL_REFUSED = "enroll.refused"
    OWNER_CHANGED = "owner.changed"
    DEVICE_DISABLED = "device.disabled"
    DEVICE_ENABLED = "device.enabled"
    DEVICE_REVOKED = "device.revoked"
    DEVICE_RESET = "device.reset"  # an unused enrollment undone: its certificate revoked, re-enrollable
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
    MANUFACTURER_ADDED = "manufacturer.added"  # an IDevID CA trusted for zero-touch enrollment
    MANUFACTURER_REMOVED = "manufacturer.removed"
    MANUFACTURER_CRL = "manufacturer.crl"  # a manufacturer's CRL loaded
    DEVICE_CLAIMED = "device.claimed"  # an owner claimed a unit by (manufacturer, serial)
    DEVICE_RELEASED = "device.released"
    NOTIFY_SENT = "notify.sent"  # a notification delivered to a webhook or SMTP server
    NOTIFY_FAILED = "notify.failed"  # a notification given up on (attempts exhausted, channel gone)
    BACKUP_CREATED = "backup.created"  # otward backup wrote an archive
    BACKUP_RESTORED = "backup.restored"  # otward restore: what it re-applied and on what evidence
    FIRMWARE_SIGNED = "firmware.signed"  # otward firmware sign (failure: refused key, digest, file)
    FIRMWARE_VERIFIED = "firmware.verified"  # otward firmware verify: success, or failure with the check id
    FIRMWARE_BOOTED = "firmware.booted"  # otward firmware boot-chain: success, or the stage that failed


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
    component: str | None = None
    subject_contains: str | None = None  # a substring of the subject, any case (the console's search)


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


# --- who may sign heads ------------------------------------------------------------------------------

AUDIT_SIGNING_OID = x509.ObjectIdentifier("1.3.6.1.4.1.32473.6.2")
"""id-kp-otwardAuditSigning: the EKU that lets a certificate sign audit heads. Without it a device or
client certificate from the same CA, whose key its holder chose, could sign a head. Same arc as
id-kp-otwardEdgeSigning (the documentation PEN of RFC 5612)."""

LEGACY_AUDIT_SIGNER_CN = "otward audit signer"


@dataclass(frozen=True)
class HeadSigner:
    """An audit signer whose certificate chained to a trust anchor, and the window in which the whole
    path (signer, its CAs, the anchor) is valid."""

    key: CertificatePublicKeyTypes
    not_before: datetime
    not_after: datetime

    def valid_at(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after


def verify_head_signer(
    certificate: x509.Certificate,
    candidates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime,
) -> HeadSigner:
    """The signer's key if ``certificate`` is an audit signer that chains, through CA certificates
    among ``candidates`` (untrusted: read from the database), to one of ``anchors``, every
    certificate on the path valid at ``at``; IntegrityError otherwise.

    The path is found by :func:`otward.core.chain.find_path` rather than
    ``cryptography.x509.verification``, whose Web PKI policy refuses the Ed25519 CAs that otward supports.
    """
    _validate_audit_signer_usage(certificate)
    path = find_path(certificate, candidates, anchors, at)
    if path is None:
        raise IntegrityError(
            f"signer certificate {certificate.serial_number:x} does not chain to the trust anchor "
            f"at {format_time(at)}",
            rule="audit-signer",
        )
    return HeadSigner(
        key=certificate.public_key(),
        not_before=max(c.not_valid_before_utc for c in path),
        not_after=min(c.not_valid_after_utc for c in path),
    )


def is_audit_signer(certificate: x509.Certificate) -> bool:
    """Whether ``certificate`` carries the usage of an audit signer (nothing about who issued it)."""
    try:
        _validate_audit_signer_usage(certificate)
    except IntegrityError:
        return False
    return True


def _validate_audit_signer_usage(certificate: x509.Certificate) -> None:
    serial = f"{certificate.serial_number:x}"
    try:
        extensions = certificate.extensions
    except ValueError as exc:  # a malformed or duplicated extension
        raise IntegrityError(f"certificate {serial} has unreadable extensions", rule="audit-signer") from exc
    try:
        if extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise IntegrityError(f"certificate {serial} is a CA, not an audit signer", rule="audit-signer")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.digital_signature:
        raise IntegrityError(
            f"certificate {serial} is not an audit signer (no keyUsage digitalSignature)", rule="audit-signer"
        )
    try:
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        # Audit signers made before id-kp-otwardAuditSigning existed carry no EKU, keyUsage
        # digitalSignature + nonRepudiation and this CN; nothing else the CA issues lacks an EKU.
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if usage.content_commitment and [n.value for n in names] == [LEGACY_AUDIT_SIGNER_CN]:
            return
        eku = None
    if eku is None or AUDIT_SIGNING_OID not in eku:
        raise IntegrityError(
            f"certificate {serial} is not an audit signer (id-kp-otwardAuditSigning missing)",
            rule="audit-signer",
        )


# --- when to sign ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadSchedule:
    """When the service signs the head: after ``events`` new records or, once it moved, ``seconds``
    after the last head, whichever comes first; and every ``heartbeat`` seconds even if nothing moved,
    so that a live installation's newest head is never old (the unsigned tail's age is measured from
    it)."""

    events: int = 1000
    seconds: float = 10.0
    heartbeat: float = 60.0


def is_head_due(latest: SignedHead | None, sequence: int, now: datetime, schedule: HeadSchedule) -> bool:
    """Whether the head at ``sequence`` should be signed now, given the newest stored head."""
    if sequence == 0:
        return False  # an empty trail needs no head
    if latest is None:
        return True
    age = (now - latest.signed_at).total_seconds()
    if sequence == latest.sequence:
        return age >= schedule.heartbeat
    return sequence - latest.sequence >= schedule.events or age >= schedule.seconds


# --- checking -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainCheck:
    """Result of walking the chain: ok, or the first bad record and why."""

    ok: bool
    records: int
    heads: int
    first_bad_sequence: int | None = None
    problem: str | None = None


@dataclass
class _Walk:
    """One pass over stored records: their own consistency, plus the hashes and the time asked for."""

    count: int = 0
    hashes: dict[int, bytes] = field(default_factory=dict)
    time_of: datetime | None = None
    bad: tuple[int, str] | None = None


def _walk(
    records: Iterable[AuditRecord],
    *,
    first: int = 1,
    previous: bytes = GENESIS_HASH,
    hashes_at: frozenset[int] = frozenset(),
    time_at: int = 0,
) -> _Walk:
    walk = _Walk()
    expected_previous = previous
    expected_sequence = first
    for record in records:
        walk.count += 1
        if record.sequence != expected_sequence:
            kind = (
                "missing or reordered" if record.sequence > expected_sequence else "duplicated or reordered"
            )
            message = f"record {expected_sequence} {kind}: found {record.sequence} in its place"
            walk.bad = (expected_sequence, message)
            return walk
        if record.previous_hash != expected_previous:
            walk.bad = (
                record.sequence,
                f"record {record.sequence} does not follow record {record.sequence - 1}",
            )
            return walk
        if chain_hash(record.previous_hash, record.event) != record.hash:
            walk.bad = (record.sequence, f"record {record.sequence} was altered")
            return walk
        if record.sequence in hashes_at:
            walk.hashes[record.sequence] = record.hash
        if record.sequence == time_at:
            walk.time_of = record.event.time
        expected_previous = record.hash
        expected_sequence += 1
    return walk


def check_chain(records: Iterable[AuditRecord]) -> ChainCheck:
    """The hash chain alone: for trails that carry no signed heads (the gateway's and the edge's
    files, whose writer is the only one who could rewrite them). It proves nothing against someone
    who can rewrite the whole file; :func:`verify_trail` is what the signed database trail uses."""
    walk = _walk(records)
    if walk.bad is not None:
        return ChainCheck(False, walk.count, 0, walk.bad[0], walk.bad[1])
    return ChainCheck(True, walk.count, 0)


class TrailStatus(enum.Enum):
    INTACT = "intact"  # signed to its end
    UNSIGNED_TAIL = "unsigned-tail"  # signed up to a head; a few newer records within the allowed age
    BROKEN = "broken"  # tampered with, cut short, or unsigned for longer than allowed


@dataclass(frozen=True)
class TrailCheck:
    """What :func:`verify_trail` found; ``ok`` unless broken (an unsigned tail within its age is a
    warning)."""

    status: TrailStatus
    records: int
    heads: int
    ledger_sequence: int
    signed_sequence: int = 0  # the newest valid head covers records 1 .. signed_sequence
    signed_at: datetime | None = None  # when that head was signed (the newest such signature)
    unsigned: int = 0  # records after signed_sequence
    unsigned_since: datetime | None = None
    unsigned_for: timedelta | None = None
    first_bad_sequence: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not TrailStatus.BROKEN


@dataclass(frozen=True)
class KnownHead:
    """A record's hash known from outside the database (the head this installation signed last)."""

    sequence: int
    hash: bytes
    source: str  # named in the problem, e.g. "the head this installation signed last (audit-head.json)"


def verify_trail(
    records: Iterable[AuditRecord],
    heads: Sequence[SignedHead],
    *,
    ledger: tuple[int, bytes],
    head_problem: Callable[[SignedHead], str | None],
    now: datetime,
    max_unsigned: timedelta,
    known: Sequence[KnownHead] = (),
) -> TrailCheck:
    """Check the trail against its signed heads, its ledger row and any head known from elsewhere.

    Broken unless: every record chains to the one before; every head is valid (``head_problem``
    returns None: signature, and a signer certificate that chains to the trust anchor) and matches
    the record it names; the trail reaches as far as every head, the ledger (read before the
    records) and every ``known`` head say, with the same hashes there; and a non-empty trail has a
    head. Records after the newest head are an unsigned tail: a warning, broken once unsigned for
    longer than ``max_unsigned``. Their own times are not signed, so the tail's age is measured from
    the older of the newest head's signing time and the oldest unsigned record's time.
    """
    ledger_sequence, ledger_hash = ledger
    ordered = sorted(heads, key=lambda h: (h.sequence, h.signed_at))
    signed_sequence = ordered[-1].sequence if ordered else 0
    pins = [
        *((h.sequence, h.hash, f"the head signed at {format_time(h.signed_at)}") for h in ordered),
        *((k.sequence, k.hash, k.source) for k in known),
    ]
    if ledger_sequence > 0:
        pins.append((ledger_sequence, ledger_hash, "the ledger row (ledger_state)"))
    pins = [pin for pin in pins if pin[0] > 0]
    walk = _walk(records, hashes_at=frozenset(pin[0] for pin in pins), time_at=signed_sequence + 1)
    base = TrailCheck(TrailStatus.BROKEN, walk.count, len(ordered), ledger_sequence)

    def broken(sequence: int, problem: str) -> TrailCheck:
        return replace(base, first_bad_sequence=sequence, problem=problem)

    if walk.bad is not None:
        return broken(*walk.bad)
    for head in ordered:
        problem = head_problem(head)
        if problem is not None:
            signed = format_time(head.signed_at)
            return broken(head.sequence, f"signed head at record {head.sequence} ({signed}): {problem}")
    matched = 0
    for sequence, expected, source in sorted(pins, key=lambda pin: pin[0]):
        if sequence > walk.count:
            return broken(
                walk.count + 1, f"the trail ends at record {walk.count}, but {source} is at record {sequence}"
            )
        if walk.hashes[sequence] != expected:
            span = (
                f"record {sequence} differs"
                if matched + 1 == sequence
                else (f"records {matched + 1} to {sequence} differ")
            )
            return broken(matched + 1, f"{span} from {source}")
        matched = sequence
    if walk.count == 0:
        return replace(base, status=TrailStatus.INTACT)
    if not ordered:
        return broken(1, f"{walk.count} records and no signed head: nothing proves them")
    signed_at = max(h.signed_at for h in ordered if h.sequence == signed_sequence)
    unsigned = walk.count - signed_sequence
    covered = replace(base, signed_sequence=signed_sequence, signed_at=signed_at, unsigned=unsigned)
    if unsigned == 0:
        return replace(covered, status=TrailStatus.INTACT)
    since = min(signed_at, walk.time_of) if walk.time_of is not None else signed_at
    age = max(now - since, timedelta(0))
    tail = replace(covered, unsigned_since=since, unsigned_for=age)
    if age > max_unsigned:
        return replace(
            tail,
            first_bad_sequence=signed_sequence + 1,
            problem=(
                f"{unsigned} records after record {signed_sequence} are unsigned since {format_time(since)} "
                f"({age.total_seconds():.0f} s, more than the allowed {max_unsigned.total_seconds():.0f} s)"
            ),
        )
    return replace(tail, status=TrailStatus.UNSIGNED_TAIL)


def check_extension(
    records: Iterable[AuditRecord], base: tuple[int, bytes] | None, head: tuple[int, bytes]
) -> str | None:
    """None when ``records`` lead from ``base`` (a head signed before; ``records`` start at its
    record) or from the start to ``head``; else what is wrong. A signer checks this before it
    signs, so that it never signs a trail that does not extend what it signed before."""
    items = iter(records)
    previous, first = GENESIS_HASH, 1
    if base is not None and base[0] > 0:
        record = next(items, None)
        if record is None or record.sequence != base[0]:
            return f"record {base[0]}, signed before, is gone"
        if record.hash != base[1]:
            return f"record {base[0]} differs from what was signed before"
        if head[0] <= base[0]:
            return None if head == base else f"the head to sign (record {head[0]}) is behind record {base[0]}"
        previous, first = record.hash, base[0] + 1
    walk = _walk(items, first=first, previous=previous, hashes_at=frozenset({head[0]}))
    if walk.bad is not None:
        return walk.bad[1]
    if head[0] not in walk.hashes:
        return f"the trail does not reach record {head[0]}, the head to sign"
    if walk.hashes[head[0]] != head[1]:
        return f"record {head[0]} differs from the ledger's head"
    return None
