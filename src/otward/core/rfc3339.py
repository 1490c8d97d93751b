"""Timestamps in JSON as RFC 3339 (``2026-12-14T06:42:56Z``), the same in CLI ``--json`` output and the
API: Python's ``str(datetime)`` gives ``2026-12-14 06:42:56+00:00``, which strict parsers refuse."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import Enum

__all__ = ["format_rfc3339", "json_default"]


def format_rfc3339(value: datetime) -> str:
    """UTC with a ``Z``, seconds, and the fraction only when there is one (as pydantic writes it);
    a naive time is taken as UTC (the database keeps UTC)."""
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def json_default(value: object) -> object:
    """``json.dumps(..., default=json_default)``: times as RFC 3339, dates as full-date, enums as
    their value, anything else (a path) as text."""
    if isinstance(value, datetime):
        return format_rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return str(value)
