"""Turning the listing options of the CLI and API into a store filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from otward.core.audit import AuditFilter, EventType
from otward.core.durations import parse_duration
from otward.core.records import CertificateFilter
from otward.errors import InvalidRequestError

__all__ = [
    "MAX_SEARCH",
    "OUTCOMES",
    "STATUSES",
    "audit_filter",
    "certificate_filter",
    "parse_time",
    "serial_prefix",
]

STATUSES = ("valid", "expired", "revoked")
MAX_SEARCH = 256  # characters of a subject or owner search
OUTCOMES = ("success", "failure")


def certificate_filter(
    now: datetime,
    *,
    status: str | None = None,
    expiring_within: str | None = None,
    ca: str | None = None,
    profile: str | None = None,
    subject: str | None = None,
    serial: str | None = None,
    owner: str | None = None,
) -> CertificateFilter:
    """``expiring_within`` (e.g. ``30d``) selects unrevoked certificates that are still valid
    now and expire within that time; ``subject`` a part of the subject DN (or device id);
    ``serial`` a hex serial or its beginning (colons and ``0x`` allowed)."""
    if subject is not None and len(subject) > MAX_SEARCH:
        raise InvalidRequestError(f"subject: at most {MAX_SEARCH} characters", rule="subject")
    if owner is not None and len(owner) > MAX_SEARCH:
        raise InvalidRequestError(f"owner: at most {MAX_SEARCH} characters", rule="owner")
    if status is not None and status not in STATUSES:
        raise InvalidRequestError(
            f"status must be one of {', '.join(STATUSES)}, not '{status}'", rule="status"
        )
    revoked: bool | None = None
    expires_before = expires_after = None
    if status == "revoked":
        revoked = True
    elif status == "valid":
        revoked, expires_after = False, now
    elif status == "expired":
        revoked, expires_before = False, now
    if expiring_within is not None:
        if status in ("revoked", "expired"):
            raise InvalidRequestError("expiring_within applies to valid certificates only", rule="status")
        revoked, expires_after = False, now
        expires_before = _shift(now, parse_duration(expiring_within), expiring_within)
    return CertificateFilter(
        ca=ca,
        profile=profile,
        revoked=revoked,
        expires_before=expires_before,
        expires_after=expires_after,
        subject=subject,
        serial_prefix=serial_prefix(serial) if serial is not None else None,
        owner=owner,
    )


def serial_prefix(text: str) -> str:
    """The stored form (lower-case hex, no leading zeros) of a serial or of its beginning as
    typed: ``0A:1B``, ``0x0a1b`` and ``a1b`` all give ``a1b``."""
    cleaned = text.strip().replace(":", "").replace(" ", "").lower().removeprefix("0x").lstrip("0")
    if not cleaned or len(cleaned) > 42 or any(c not in "0123456789abcdef" for c in cleaned):
        raise InvalidRequestError(
            f"serial: '{text[:64]}' is not a hexadecimal serial number (or its beginning)", rule="serial"
        )
    return cleaned


def _shift(now: datetime, delta: timedelta, text: str) -> datetime:
    """``now + delta``, or a 400 naming ``text`` when that leaves the years 1 to 9999."""
    try:
        return now + delta
    except OverflowError:
        raise InvalidRequestError(f"'{text}' reaches beyond the years 1 to 9999", rule="time") from None


def parse_time(text: str, now: datetime) -> datetime:
    """An RFC 3339 time (``2026-11-22T06:00:00Z``) or a duration back from now (``24h``), in UTC."""
    try:
        delta = parse_duration(text)
    except InvalidRequestError:
        pass
    else:
        return _shift(now, -delta, text)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(
            f"'{text}' is neither an RFC 3339 time nor a duration such as 24h", rule="time"
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:  # 0001-01-01T00:00:00+14:00 is before the first UTC instant Python can hold
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidRequestError(f"'{text}' is out of range in UTC", rule="time") from None


def audit_filter(
    now: datetime,
    *,
    since: str | None = None,
    until: str | None = None,
    type: str | None = None,
    subject: str | None = None,
    outcome: str | None = None,
) -> AuditFilter:
    if type is not None and type not in {t.value for t in EventType}:
        known = ", ".join(t.value for t in EventType)
        raise InvalidRequestError(f"unknown event type '{type}' (known: {known})", rule="type")
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidRequestError(f"outcome must be success or failure, not '{outcome}'", rule="outcome")
    return AuditFilter(
        since=parse_time(since, now) if since else None,
        until=parse_time(until, now) if until else None,
        type=type,
        subject=subject,
        outcome=outcome,
    )
