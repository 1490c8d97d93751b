"""Notifications: which conditions are due, what a message says, how it is signed.

Checks turn the installation's state into :class:`Condition` values (one per CA and owner for
expiring certificates, one per CA for a CRL that is not current, ...). A condition carries
*marks*: what it announces (``"<serial>:30d"``, ``"overdue"``). :func:`decide` compares them with
the marks already announced and yields a :class:`Notification` only when a mark is new, so the
same condition is not re-sent every interval but is re-sent when it changes; a condition that
cleared is forgotten, and announced again should it return.

A notification's ``id`` is its idempotency key: fixed when it is decided and sent unchanged with
every retry on every channel (docs/notifications.md). Webhook bodies are signed with
HMAC-SHA256 over ``"<timestamp>." + body`` (:func:`signature_header`), so a receiver can refuse
both forged and replayed messages (:func:`verify_signature`).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from otward.core.rfc3339 import format_rfc3339

__all__ = [
    "CA_EXPIRY_MARKS",
    "PAYLOAD_VERSION",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Condition",
    "Decision",
    "ExpiringCertificate",
    "JsonValue",
    "Notification",
    "NotificationChannel",
    "NotifyEvent",
    "ca_expiry_conditions",
    "decide",
    "encode_payload",
    "expiry_conditions",
    "flood_condition",
    "is_loopback_host",
    "probe_notification",
    "render_email",
    "retry_delay",
    "signature_header",
    "verify_signature",
]

PAYLOAD_VERSION = 1
SIGNATURE_HEADER = "X-Otward-Signature"
TIMESTAMP_HEADER = "X-Otward-Timestamp"
CA_EXPIRY_MARKS = (90, 30, 7)  # days before a CA certificate's notAfter

JsonValue = str | int | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


class NotifyEvent(enum.Enum):
    """What a channel can subscribe to (``events = [...]`` in config.toml)."""

    CERT_EXPIRING = "cert.expiring"  # certificates of one CA and owner crossed an expiry mark
    CA_EXPIRING = "ca.expiring"  # a CA certificate crossed 90, 30 or 7 days before notAfter
    CRL_FAILED = "crl.failed"  # a CA's CRL is missing, behind its revocations or not refreshed
    AUDIT_FAILED = "audit.failed"  # the audit chain does not verify
    KEY_FAILED = "key.failed"  # a CA or signer key (HSM, token, key file) cannot sign
    ENROLL_FLOOD = "enroll.flood"  # more refused or accepted enrollments in a window than allowed
    TEST = "test"  # ``otward notify test``: sent to every channel, whatever it subscribes to


@dataclass(frozen=True)
class Condition:
    """Something worth telling, as a check found it now; ``key`` names what it is about."""

    event: NotifyEvent
    key: str
    marks: frozenset[str]
    summary: str
    details: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Notification:
    """A decided message; ``id`` is its idempotency key."""

    id: str
    event: NotifyEvent
    key: str
    time: datetime
    summary: str
    details: Mapping[str, JsonValue]


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` found: messages to send and the announced marks to store or forget."""

    notifications: tuple[Notification, ...]
    store: Mapping[str, tuple[NotifyEvent, frozenset[str]]]
    forget: tuple[str, ...]


@dataclass(frozen=True)
class ExpiringCertificate:
    serial: str
    ca: str
    owner: str | None
    subject: str
    not_valid_after: datetime


class NotificationChannel(Protocol):
    """Where notifications go: a webhook or an SMTP server (``otward.adapters.notify``)."""

    @property
    def name(self) -> str:
        """Stable and free of secrets: shown in listings and audit events."""
        ...

    def accepts(self, event: NotifyEvent) -> bool: ...

    def deliver(self, payload: bytes, notification: Mapping[str, JsonValue]) -> None:
        """Send once; BackendError with a reason that holds no secret when it did not arrive."""
        ...


def _notification_id(key: str, marks: Iterable[str], now: datetime) -> str:
    material = "\n".join([key, *sorted(marks), format_rfc3339(now)]).encode()
    return hashlib.sha256(material).hexdigest()[:32]


def decide(
    conditions: Iterable[Condition],
    announced: Mapping[str, tuple[NotifyEvent, frozenset[str]]],
    checked: Iterable[NotifyEvent],
    now: datetime,
) -> Decision:
    """Notifications for conditions with a mark not yet announced; marks to store for every
    condition found; announced conditions of a ``checked`` event that were not found to forget."""
    found: dict[str, tuple[NotifyEvent, frozenset[str]]] = {}
    notifications = []
    for condition in conditions:
        if condition.key in found:
            raise ValueError(f"condition {condition.key!r} found twice")
        found[condition.key] = (condition.event, condition.marks)
        previous = announced.get(condition.key, (condition.event, frozenset()))[1]
        if condition.marks - previous:
            notifications.append(
                Notification(
                    id=_notification_id(condition.key, condition.marks, now),
                    event=condition.event,
                    key=condition.key,
                    time=now,
                    summary=condition.summary,
                    details=condition.details,
                )
            )
    evaluated = set(checked)
    store = {key: value for key, value in found.items() if announced.get(key) != value}
    forget = tuple(
        sorted(key for key, (event, _) in announced.items() if event in evaluated and key not in found)
    )
    return Decision(tuple(notifications), store, forget)


def _days(value: int) -> str:
    return f"{value} day" if value == 1 else f"{value} days"


def expiry_conditions(
    certificates: Iterable[ExpiringCertificate], now: datetime, marks_days: Sequence[int]
) -> list[Condition]:
    """One condition per CA and owner listing its certificates that crossed a mark (days before
    notAfter); each certificate is announced once per mark."""
    groups: dict[tuple[str, str | None], list[tuple[ExpiringCertificate, int]]] = {}
    for certificate in certificates:
        left = certificate.not_valid_after - now
        crossed = [m for m in marks_days if left <= timedelta(days=m)]
        if not crossed:
            continue
        groups.setdefault((certificate.ca, certificate.owner), []).append((certificate, min(crossed)))
    conditions = []
    for (ca, owner), members in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        members.sort(key=lambda m: (m[0].not_valid_after, m[0].serial))
        marks = frozenset(
            f"{c.serial}:{m}d"
            for c, _ in members
            for m in marks_days
            if c.not_valid_after - now <= timedelta(days=m)
        )
        who = f"owner '{owner}'" if owner else "no owner"
        first = members[0][0].not_valid_after
        summary = (
            f"{len(members)} certificate{'s' if len(members) != 1 else ''} of CA '{ca}' ({who}) "
            f"expire within {_days(max(m for _, m in members))}; the first on {format_rfc3339(first)}"
        )
        details: dict[str, JsonValue] = {
            "ca": ca,
            "owner": owner,
            "certificates": [
                {
                    "serial": c.serial,
                    "subject": c.subject,
                    "not_valid_after": format_rfc3339(c.not_valid_after),
                    "days_left": max(0, (c.not_valid_after - now).days),
                    "mark": f"{mark}d",
                }
                for c, mark in members
            ],
        }
        key = f"cert.expiring/{ca}/{owner or ''}"
        conditions.append(Condition(NotifyEvent.CERT_EXPIRING, key, marks, summary, details))
    return conditions


def ca_expiry_conditions(
    authorities: Iterable[tuple[str, datetime]], now: datetime, marks_days: Sequence[int] = CA_EXPIRY_MARKS
) -> list[Condition]:
    """One condition per CA whose certificate crossed a mark (or expired): ``(name, notAfter)``."""
    conditions = []
    for name, not_after in sorted(authorities):
        left = not_after - now
        marks = {f"{m}d" for m in marks_days if left <= timedelta(days=m)}
        if not marks:
            continue
        if left <= timedelta(0):
            marks.add("expired")
            summary = f"the certificate of CA '{name}' expired on {format_rfc3339(not_after)}"
        else:
            summary = (
                f"the certificate of CA '{name}' expires on {format_rfc3339(not_after)} "
                f"(in {_days(left.days)}): renew or roll it over"
            )
        details: dict[str, JsonValue] = {
            "ca": name,
            "not_valid_after": format_rfc3339(not_after),
            "days_left": max(0, left.days),
        }
        conditions.append(
            Condition(NotifyEvent.CA_EXPIRING, f"ca.expiring/{name}", frozenset(marks), summary, details)
        )
    return conditions


def flood_condition(
    outcome: str, count: int, threshold: int, now: datetime, window: timedelta
) -> Condition | None:
    """A condition when ``count`` enrollments of ``outcome`` (refused or accepted) in the window
    ending now exceed ``threshold``; announced once per window (windows are aligned to the epoch)."""
    if count <= threshold:
        return None
    seconds = int(window.total_seconds())
    start = datetime.fromtimestamp(int(now.timestamp()) // seconds * seconds, UTC)
    summary = (
        f"{count} {outcome} enrollments in the last {seconds // 60} minutes "
        f"(more than the threshold of {threshold})"
    )
    details: dict[str, JsonValue] = {
        "outcome": outcome,
        "count": count,
        "threshold": threshold,
        "window_minutes": seconds // 60,
    }
    return Condition(
        NotifyEvent.ENROLL_FLOOD,
        f"enroll.flood/{outcome}",
        frozenset({format_rfc3339(start)}),
        summary,
        details,
    )


def probe_notification(now: datetime, nonce: str) -> Notification:
    """What ``otward notify test`` sends (``nonce`` makes each test its own message)."""
    return Notification(
        id=hashlib.sha256(f"test\n{nonce}\n{format_rfc3339(now)}".encode()).hexdigest()[:32],
        event=NotifyEvent.TEST,
        key="test",
        time=now,
        summary="test message from otward notify test",
        details={},
    )


def encode_payload(notification: Notification, installation: str) -> bytes:
    """The JSON body of a webhook (schema in docs/notifications.md): sorted keys, UTF-8."""
    body: dict[str, JsonValue] = {
        "version": PAYLOAD_VERSION,
        "id": notification.id,
        "type": notification.event.value,
        "time": format_rfc3339(notification.time),
        "installation": installation,
        "summary": notification.summary,
        "details": dict(notification.details),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``b"<timestamp>." + body``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: bytes, timestamp: str, body: bytes, signature: str, *, now: int, tolerance: int = 300
) -> bool:
    """What a receiver checks: the timestamp within ``tolerance`` seconds of ``now`` and the
    signature over it and the raw body, compared in constant time. Never raises."""
    if not timestamp.isdigit() or len(timestamp) > 12 or abs(now - int(timestamp)) > tolerance:
        return False
    expected = signature_header(secret, int(timestamp), body)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def retry_delay(attempt: int, *, base: float, cap: float, jitter: float) -> timedelta:
    """Exponential backoff with jitter: ``base * 2**(attempt-1)`` up to ``cap``, then scaled by
    0.5 to 1.0 (``jitter`` in [0, 1), drawn by the caller) so that retries do not arrive together."""
    if attempt < 1 or not 0 <= jitter < 1:
        raise ValueError("attempt must be at least 1 and jitter in [0, 1)")
    delay = min(cap, base * 2 ** min(attempt - 1, 32))
    return timedelta(seconds=delay * (0.5 + jitter / 2))


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``); never raises."""
    text = host.strip("[]").lower()
    if text in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def render_email(notification: Mapping[str, JsonValue]) -> tuple[str, str]:
    """Subject and plain-text body of the e-mail for a decoded payload (:func:`encode_payload`)."""
    get = notification.get
    subject = " ".join(f"[otward {get('installation')}] {get('type')}: {get('summary')}".split())[:200]
    lines = [
        str(notification.get("summary")),
        "",
        f"installation: {notification.get('installation')}",
        f"event: {notification.get('type')}",
        f"time: {notification.get('time')}",
        f"id: {notification.get('id')}",
        "",
        json.dumps(notification.get("details"), indent=2, sort_keys=True, ensure_ascii=False),
        "",
    ]
    return subject, "\n".join(lines)
