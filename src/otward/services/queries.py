"""Turning the listing options of the CLI and API into a store filter."""

from __future__ import annotations

from datetime import datetime

from otward.core.durations import parse_duration
from otward.core.records import CertificateFilter
from otward.errors import InvalidRequestError

__all__ = ["STATUSES", "certificate_filter"]

STATUSES = ("valid", "expired", "revoked")


def certificate_filter(
    now: datetime,
    *,
    status: str | None = None,
    expiring_within: str | None = None,
    ca: str | None = None,
    profile: str | None = None,
) -> CertificateFilter:
    """``expiring_within`` (e.g. ``30d``) selects unrevoked certificates that are still valid
    now and expire within that time."""
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
        expires_before = now + parse_duration(expiring_within)
    return CertificateFilter(
        ca=ca, profile=profile, revoked=revoked, expires_before=expires_before, expires_after=expires_after
    )
